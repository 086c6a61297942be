package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** protocol.md §4.3: the counter never issues a number twice, whatever moment a process dies at. */
class SequenceCounterTest {
    @Test
    void freshCounterStartsAt257AndEachOpenSkips256(@TempDir Path dir) throws Exception {
        Path p = dir.resolve("state").resolve("sequence");
        SequenceCounter.create(p);
        SequenceCounter a = new SequenceCounter(p);
        assertEquals(257, a.next());
        assertEquals(258, a.next());
        assertEquals(String.format("%020d\n", 258), Files.readString(p));
        SequenceCounter b = new SequenceCounter(p); // a restart: 258 + 256, then the next
        assertEquals(515, b.next());
    }

    /**
     * What a killed process leaves is the file as it is at that instant. Read it, unlocked, while
     * numbers are drawn: it must always hold a whole number. (A truncate-then-write update leaves
     * an empty file at some instants, which the next open would read as 0.)
     */
    @Test
    void theFileAlwaysHoldsAWholeNumber(@TempDir Path dir) throws Exception {
        Path p = dir.resolve("sequence");
        SequenceCounter c = new SequenceCounter(p);
        AtomicReference<String> bad = new AtomicReference<>();
        Thread writer = new Thread(() -> {
            try {
                for (int i = 0; i < 5_000; i++) c.next();
            } catch (Exception e) {
                bad.compareAndSet(null, e.toString());
            }
        });
        writer.start();
        int reads = 0;
        while (writer.isAlive() || reads == 0) {
            String s = Files.readString(p);
            reads++;
            if (!s.matches("[0-9]{20}\n")) bad.compareAndSet(null, "read " + s.length() + " characters: '" + s + "'");
        }
        writer.join();
        assertNull(bad.get());
        assertEquals(256 + 5_000, Long.parseLong(Files.readString(p).trim()));
    }

    @Test
    void aDamagedCounterIsRefusedNotReset(@TempDir Path dir) throws Exception {
        Path p = dir.resolve("sequence");
        Files.writeString(p, "garbage\n");
        assertThrows(java.io.IOException.class, () -> new SequenceCounter(p));
        assertEquals("garbage\n", Files.readString(p));
    }
}
