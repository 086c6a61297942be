package dev.interfed;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;

/**
 * Crash-safe per-node sequence counter (protocol.md §4.3): state/sequence holds 20 zero-padded
 * decimal digits and a newline. Each number is a locked read-increment-write; every 256th value is
 * fsynced, and each open skips ahead by 256 (fsynced), so no number is ever issued twice.
 */
public final class SequenceCounter {
    public static final int SKIP = 256;
    private final Path path;

    public SequenceCounter(Path path) throws IOException {
        this.path = path;
        if (!Files.exists(path)) create(path);
        synchronized (this) {
            update(SKIP, true);
        }
    }

    public static void create(Path path) throws IOException {
        Files.createDirectories(path.getParent());
        Files.writeString(path, format(0), StandardCharsets.US_ASCII, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        try {
            Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
        } catch (UnsupportedOperationException ignored) {
            // not a POSIX file system
        }
    }

    static String format(long v) {
        return String.format("%020d%n", v).replace(System.lineSeparator(), "\n");
    }

    public synchronized long next() throws IOException {
        return update(1, false);
    }

    private long update(long by, boolean forceSync) throws IOException {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
             FileLock lock = ch.lock()) {
            ByteBuffer buf = ByteBuffer.allocate(64);
            while (ch.read(buf) > 0 && buf.hasRemaining()) { /* read all */ }
            String s = new String(buf.array(), 0, buf.position(), StandardCharsets.US_ASCII).trim();
            long cur;
            try {
                cur = s.isEmpty() ? 0 : Long.parseLong(s);
            } catch (NumberFormatException e) {
                throw new IOException(path + " is not a sequence counter (" + s.length() + " characters); refusing to guess a number");
            }
            long v = Math.addExact(cur, by);
            // Overwrite the 21 bytes in place, never truncate first: a process killed between a
            // truncate and the write would leave an empty file, which reads as 0, and the next
            // open would issue numbers again (§4.3).
            ch.write(ByteBuffer.wrap(format(v).getBytes(StandardCharsets.US_ASCII)), 0);
            if (forceSync || v % SKIP == 0) ch.force(true);
            return v;
        }
    }
}
