package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.DeserializationFeature;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.PrivateKey;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericRecord;
import org.junit.jupiter.api.Test;

/** Golden vectors of tests/vectors/ (protocol.md §4.5, §10 steps 2-3). A mismatch fails the build. */
class VectorsTest {
    static final ObjectMapper M = new ObjectMapper().enable(DeserializationFeature.USE_BIG_INTEGER_FOR_INTS);

    static Path vectors() {
        return Paths.get(System.getProperty("interfed.vectors", "../../tests/vectors"));
    }

    static JsonNode load(String name) throws Exception {
        return M.readTree(Files.readString(vectors().resolve(name)));
    }

    @Test
    void specVector() throws Exception {
        JsonNode fp = load("fingerprints.json");
        assertEquals("CRC-64-AVRO", fp.get("algorithm").asText());
        assertTrue(fp.get("spec_vectors").size() >= 1);
        for (JsonNode v : fp.get("spec_vectors")) {
            Schema s = new Schema.Parser().parse(v.get("schema").asText());
            assertEquals(v.get("canonical_form").asText(), SchemaNormalization.toParsingForm(s));
            assertEquals(v.get("fingerprint_hex").asText(), Hex.encode(Schemas.fingerprint(s)));
            assertEquals(Long.parseLong(v.get("fingerprint_int64").asText()), SchemaNormalization.parsingFingerprint64(s));
        }
        assertEquals("8a8f25cce724dd63", Hex.encode(Schemas.fingerprint(Schema.create(Schema.Type.NULL))));
    }

    @Test
    void everySchemaFingerprint() throws Exception {
        JsonNode fp = load("fingerprints.json");
        Map<String, Schemas.Entry> built = Schemas.builtIn();
        Set<String> seen = new HashSet<>();
        String prev = "";
        for (JsonNode v : fp.get("schemas")) {
            String path = v.get("path").asText();
            assertTrue(path.compareTo(prev) > 0, "sorted by path");
            prev = path;
            Schemas.Entry e = built.get(v.get("full_name").asText());
            assertNotNull(e, "built-in schema " + v.get("full_name"));
            assertEquals(path, e.path);
            assertEquals(v.get("canonical_form").asText(), e.canonical, path);
            assertEquals(v.get("fingerprint_hex").asText(), e.fingerprintHex(), path);
            assertEquals(Long.parseLong(v.get("fingerprint_int64").asText()), SchemaNormalization.parsingFingerprint64(e.schema), path);
            assertEquals(v.get("fingerprint_hex").asText(), Hex.encode(Schemas.fingerprintOfCanonical(v.get("canonical_form").asText())));
            seen.add(e.schema.getFullName());
        }
        assertEquals(built.keySet(), seen, "every built-in schema has a vector and vice versa");
        assertEquals("f8ab753961968b6b", Schemas.get(Schemas.SCHEMA_PUBLISHED).fingerprintHex());
        assertEquals("f550898ac2e9b245", Schemas.get(Schemas.JOIN_REQUESTED).fingerprintHex());
        assertEquals("7434021f4750d296", Schemas.get(Schemas.ENVELOPE).fingerprintHex());
    }

    @Test
    void envelopes() throws Exception {
        JsonNode ev = load("envelopes.json");
        assertArrayEquals(Hex.decode(ev.get("signing_tag_hex").asText()), Envelope.TAG);
        assertEquals(ev.get("envelope_schema").get("fingerprint_hex").asText(), Schemas.get(Schemas.ENVELOPE).fingerprintHex());
        byte[] seed = Hex.decode(ev.get("key").get("private_seed_hex").asText());
        byte[] pub = Hex.decode(ev.get("key").get("public_key_hex").asText());
        PrivateKey key = Ed25519.privateFromSeed(seed);
        assertArrayEquals(pub, Ed25519.publicFromPrivate(key));
        assertEquals(3, ev.get("cases").size());
        for (JsonNode c : ev.get("cases")) {
            String name = c.get("name").asText();
            Schemas.Entry schema = Schemas.get(c.get("payload_type").asText());
            assertEquals(c.get("payload_fingerprint_hex").asText(), schema.fingerprintHex(), name);
            Set<String> hexFields = new HashSet<>();
            c.get("payload_hex_fields").forEach(x -> hexFields.add(x.asText()));
            GenericRecord payload = Payloads.fromJson(schema.schema, c.get("payload"), hexFields);
            byte[] avro = Payloads.encode(payload);
            assertEquals(c.get("payload_avro_hex").asText(), Hex.encode(avro), name + " payload");
            JsonNode e = c.get("envelope");
            assertEquals(c.get("payload_avro_hex").asText(), e.get("payload_hex").asText());
            Envelope env = new Envelope();
            env.eventId = e.get("event_id").asText();
            env.payloadType = e.get("payload_type").asText();
            env.payloadFingerprint = Hex.decode(e.get("payload_fingerprint_hex").asText());
            env.sender = e.get("sender").asText();
            assertTrue(e.get("sequence").isIntegralNumber());
            env.sequence = e.get("sequence").bigIntegerValue().longValueExact();
            env.issuedAt = e.get("issued_at").bigIntegerValue().longValueExact();
            env.subject = e.get("subject").asText();
            env.correlationId = e.get("correlation_id").isNull() ? null : e.get("correlation_id").asText();
            env.payload = avro;
            assertEquals(c.get("signing_bytes_hex").asText(), Hex.encode(env.signingBytes()), name + " signing bytes");
            env.sign(key);
            assertEquals(c.get("signature_hex").asText(), Hex.encode(env.signature), name + " signature");
            byte[] encoded = env.encode();
            assertEquals(c.get("encoded_hex").asText(), Hex.encode(encoded), name + " encoded");

            // the other way round
            Envelope d = Envelope.decode(Hex.decode(c.get("encoded_hex").asText()));
            assertEquals(env.eventId, d.eventId);
            assertEquals(env.sequence, d.sequence);
            assertEquals(env.issuedAt, d.issuedAt);
            assertEquals(env.correlationId, d.correlationId);
            assertArrayEquals(encoded, d.encode(), "canonical");
            assertArrayEquals(Hex.decode(c.get("signing_bytes_hex").asText()), d.signingBytes());
            assertTrue(Ed25519.verifyStrict(pub, d.signingBytes(), d.signature), name + " verifies");
            GenericRecord back = AvroCodec.decodeStrict(schema.schema, d.payload);
            assertEquals(payload, back, name + " payload decodes");
            if (name.equals("join_requested")) {
                assertEquals(9007199254740993L, d.sequence);
                byte[] csr = Hex.decode(c.get("payload").get("csr").asText());
                Csr parsed = Csr.parseAndVerify(csr);
                assertArrayEquals(pub, parsed.publicKey);
                assertEquals(java.util.List.of("node-a"), parsed.commonNames);
                // our own DER builder reproduces the reference CSR byte for byte
                byte[] mine = Csr.build(key, pub, c.get("payload").get("node_id").asText(), c.get("payload").get("institution").asText());
                assertEquals(c.get("payload").get("csr").asText(), Hex.encode(mine));
            }
        }
    }
}
