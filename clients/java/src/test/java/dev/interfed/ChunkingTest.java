package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import org.apache.avro.generic.GenericRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** protocol.md §8.1: every chunk record fits max_record_bytes, whatever the event's correlation id. */
class ChunkingTest {
    @Test
    void chunksFitWithALongCorrelationId(@TempDir Path dir) throws Exception {
        int max = 4096;
        Mesh mesh = new Mesh("localhost:9", "interfed.", max); // no connection is made: nothing is sent
        Mesh.Sender sender = new Mesh.Sender(mesh, "node-a",
                Ed25519.privateFromSeed(Hex.decode("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")),
                new SequenceCounter(dir.resolve("sequence")));
        GenericRecord letter = Payloads.record(Schemas.DEAD_LETTER);
        letter.put("reason", "MALFORMED_PAYLOAD");
        letter.put("detail", "x".repeat(50_000));
        letter.put("service", "test");
        letter.put("topic", "interfed.registry");
        letter.put("partition", 0);
        letter.put("offset", 0L);
        letter.put("key", null);
        letter.put("original", ByteBuffer.wrap(new byte[0]));
        letter.put("original_size", 0L);
        letter.put("original_sha256", ByteBuffer.wrap(new byte[32]));
        letter.put("original_truncated", false);
        String correlation = "task-" + "c".repeat(200); // a correlation id much longer than the 32 bytes of slack
        Envelope whole = sender.build(letter, "node-a", correlation);
        byte[] key = "node-a".getBytes(StandardCharsets.UTF_8);
        assertTrue(whole.encode().length + key.length > max);
        List<Envelope> chunks = sender.chunks(whole);
        assertTrue(chunks.size() > 10);
        for (Envelope c : chunks) {
            assertEquals(correlation, c.correlationId);
            assertTrue(c.encode().length + key.length <= max, "chunk of " + (c.encode().length + key.length) + " bytes > " + max);
        }
        // and the pieces are the whole, in order
        java.io.ByteArrayOutputStream joined = new java.io.ByteArrayOutputStream();
        for (Envelope c : chunks) {
            GenericRecord p = AvroCodec.decodeStrict(Schemas.get(Schemas.CHUNK).schema, c.payload);
            joined.writeBytes(AvroCodec.bytes(p.get("data")));
        }
        assertArrayEquals(whole.encode(), joined.toByteArray());
    }
}
