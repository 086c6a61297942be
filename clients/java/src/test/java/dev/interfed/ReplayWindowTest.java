package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

/** protocol.md §6.3 and §11 item 3: the replay window, with the reference's arrival-order forgetting. */
class ReplayWindowTest {
    @Test
    void duplicatesSkipReplaysRefuse() throws Exception {
        Receiver.Window w = new Receiver.Window();
        assertTrue(w.check(5, "e5"));
        w.record(5, "e5");
        assertFalse(w.check(5, "e5"));
        assertEquals("REPLAYED_SEQUENCE", assertThrows(ProtocolException.class, () -> w.check(5, "other")).reason);
        w.record(10_000, "e10000");
        assertEquals("REPLAYED_SEQUENCE", assertThrows(ProtocolException.class, () -> w.check(10_000 - 4096, "x")).reason);
        assertTrue(w.check(10_000 - 4095, "x"));
    }

    @Test
    void forgetsInRecordingOrderAsTheReference() throws Exception {
        Receiver.Window w = new Receiver.Window();
        w.record(10_000, "a");
        w.record(6_000, "late"); // recorded out of order, above the floor (5904)
        w.record(10_100, "b");   // floor 6004: 6000 is below it, but 10000 was recorded first and stays, so 6000 stays too
        assertFalse(w.check(6_000, "late"), "a duplicate of a remembered sequence is skipped");
        w.record(14_200, "c");   // floor 10104: 10000 goes, then 6000, then 10100
        assertEquals("REPLAYED_SEQUENCE", assertThrows(ProtocolException.class, () -> w.check(6_000, "late")).reason);
        assertEquals(1, w.ids.size());
    }
}
