package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** tests/vectors/schema_learning.json: every published schema is learned or refused as the reference does (§2.5). */
class SchemaLearningTest {
    @Test
    void everyCaseGetsTheReferenceVerdict() throws Exception {
        List<String> wrong = new ArrayList<>();
        for (JsonNode c : VectorsTest.load("schema_learning.json").get("cases")) {
            Receiver rx = new Receiver(null, "interfed.", 1_000_000, Mesh.MAX_EVENT_BYTES);
            String verdict = c.get("verdict").asText();
            byte[] fp = verdict.equals("learn") ? Hex.decode(c.get("fingerprint_hex").asText()) : new byte[8];
            String got;
            try {
                rx.learn(fp, "x.y.A", c.get("schema_json").asText());
                got = rx.knowsSchema(Hex.encode(fp)) ? "learn" : "not learned";
            } catch (ProtocolException e) {
                got = e.reason;
            }
            if (!got.equals(verdict)) wrong.add(c.get("name").asText() + ": " + got + ", the reference says " + verdict);
        }
        assertTrue(wrong.isEmpty(), String.join("\n", wrong));
    }
}
