package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.security.PrivateKey;
import java.util.HashMap;
import java.util.Map;
import org.apache.avro.generic.GenericRecord;
import org.junit.jupiter.api.Test;

/** tests/vectors/evidence.json (protocol.md §13.1, §13.2): Java builds the reference's EvidenceRecorded byte for byte. */
class EvidenceTest {
    @Test
    void governedTableIsTheReferences() throws Exception {
        Map<String, String> ref = new HashMap<>();
        VectorsTest.load("evidence.json").get("governed").fields().forEachRemaining(f -> ref.put(f.getKey(), f.getValue().asText()));
        assertEquals(ref, Evidence.GOVERNED);
        for (String type : Evidence.GOVERNED.keySet()) assertNotNull(Receiver.topicOf(type), type + " has a topic");
    }

    @Test
    void theEvidenceTopicIsOnePartitionKeptForever() {
        Object[] row = null;
        for (Object[] t : Mesh.TOPICS) if (t[0].equals("evidence")) row = t;
        assertNotNull(row, "evidence is created with the others (§3.1)");
        assertEquals(1, row[1], "one partition: one order of leaves (§13.3)");
        assertEquals("K", row[2]);
        assertEquals("evidence", Receiver.topicOf(Evidence.EVIDENCE_RECORDED));
    }

    @Test
    void theSenderRecordsEveryGovernedStepButItsApplication() {
        assertEquals("registry.announce", Evidence.senderAction(Schemas.NODE_ANNOUNCED));
        assertEquals("registry.terminate", Evidence.senderAction(Schemas.CONTRACT_TERMINATED));
        assertNull(Evidence.senderAction(Schemas.JOIN_REQUESTED), "an operator records registry.apply on receipt (§13.7)");
        assertNull(Evidence.senderAction(Schemas.HEARTBEAT));
        assertNull(Evidence.senderAction(Schemas.DEAD_LETTER));
        assertNull(Evidence.senderAction(Schemas.SCHEMA_PUBLISHED));
        assertNull(Evidence.senderAction(Evidence.EVIDENCE_RECORDED));
    }

    @Test
    void evidenceOfEachGovernedVectorEnvelope() throws Exception {
        JsonNode envs = VectorsTest.load("envelopes.json");
        JsonNode ev = VectorsTest.load("evidence.json");
        PrivateKey key = Ed25519.privateFromSeed(Hex.decode(envs.get("key").get("private_seed_hex").asText()));
        byte[] pub = Hex.decode(envs.get("key").get("public_key_hex").asText());
        Map<String, JsonNode> byName = new HashMap<>();
        for (JsonNode c : envs.get("cases")) byName.put(c.get("name").asText(), c);
        int governed = 0;
        for (JsonNode c : envs.get("cases")) if (Evidence.GOVERNED.containsKey(c.get("payload_type").asText())) governed++;
        assertEquals(governed, ev.get("cases").size(), "one case per governed envelope");
        assertTrue(governed >= 2);
        for (JsonNode c : ev.get("cases")) {
            String name = c.get("evidenced_case").asText();
            Envelope evidenced = Envelope.decode(Hex.decode(byName.get(name).get("encoded_hex").asText()));
            GenericRecord proof = Evidence.of(Evidence.GOVERNED.get(evidenced.payloadType), Receiver.topicOf(evidenced.payloadType), evidenced);
            JsonNode want = c.get("record");
            assertEquals(want.get("action").asText(), proof.get("action").toString(), name);
            assertEquals(want.get("event_sha256").asText(), Hex.encode(((java.nio.ByteBuffer) proof.get("event_sha256")).array()), name);
            assertEquals(c.get("payload_avro_hex").asText(), Hex.encode(Payloads.encode(proof)), name + " payload");

            JsonNode e = c.get("envelope");
            assertEquals(evidenced.subject, e.get("subject").asText(), "same subject");
            Envelope env = new Envelope();
            env.eventId = e.get("event_id").asText();
            env.payloadType = Evidence.EVIDENCE_RECORDED;
            assertEquals(env.payloadType, e.get("payload_type").asText());
            env.payloadFingerprint = Schemas.get(Evidence.EVIDENCE_RECORDED).fingerprint;
            env.sender = e.get("sender").asText();
            env.sequence = e.get("sequence").bigIntegerValue().longValueExact();
            env.issuedAt = e.get("issued_at").bigIntegerValue().longValueExact();
            env.subject = evidenced.subject;
            env.correlationId = evidenced.correlationId;
            assertEquals(e.get("correlation_id").isNull() ? null : e.get("correlation_id").asText(), env.correlationId, "same correlation id");
            env.payload = Payloads.encode(proof);
            env.sign(key);
            assertEquals(c.get("encoded_hex").asText(), Hex.encode(env.encode()), name + " encoded");
            assertTrue(Ed25519.verifyStrict(pub, env.signingBytes(), env.signature));
        }
    }
}
