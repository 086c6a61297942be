package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.math.BigInteger;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** Negative cases of protocol.md §4.1 / §4.2 (§10 step 3). */
class NegativeTest {
    static JsonNode heartbeatCase() throws Exception {
        for (JsonNode c : VectorsTest.load("envelopes.json").get("cases")) if (c.get("name").asText().equals("heartbeat")) return c;
        throw new AssertionError("no heartbeat case");
    }

    static byte[] pub() throws Exception {
        return Hex.decode(VectorsTest.load("envelopes.json").get("key").get("public_key_hex").asText());
    }

    static void assertRefused(String reason, byte[] value) {
        ProtocolException e = assertThrows(ProtocolException.class, () -> Envelope.decode(value));
        assertEquals(reason, e.reason);
    }

    @Test
    void nonMinimalVarint() throws Exception {
        byte[] v = Hex.decode(heartbeatCase().get("encoded_hex").asText());
        // sequence 1 is "02" right after sender "0c node-a" at a known place: rewrite it as "82 00"
        String hex = Hex.encode(v);
        String needle = "0c6e6f64652d610280a0d5edee66";
        int at = hex.indexOf(needle);
        assertTrue(at > 0);
        String bad = hex.substring(0, at) + "0c6e6f64652d61" + "8200" + "80a0d5edee66" + hex.substring(at + needle.length());
        assertRefused("MALFORMED_ENVELOPE", Hex.decode(bad));
        // a non-minimal length of the empty correlation-id union index: 00 -> 80 00
        String bad2 = hex.replace("0c6e6f64652d6100140c", "0c6e6f64652d618000140c");
        assertNotEquals(hex, bad2);
        assertRefused("MALFORMED_ENVELOPE", Hex.decode(bad2));
    }

    @Test
    void trailingAndTruncated() throws Exception {
        byte[] v = Hex.decode(heartbeatCase().get("encoded_hex").asText());
        byte[] longer = Arrays.copyOf(v, v.length + 1);
        assertRefused("MALFORMED_ENVELOPE", longer);
        assertRefused("MALFORMED_ENVELOPE", Arrays.copyOf(v, v.length - 1));
        assertRefused("MALFORMED_ENVELOPE", new byte[0]);
    }

    @Test
    void badUnionIndexAndUtf8() throws Exception {
        String hex = heartbeatCase().get("encoded_hex").asText();
        assertRefused("MALFORMED_ENVELOPE", Hex.decode(hex.replace("0c6e6f64652d6100140c", "0c6e6f64652d6104140c")));
        // invalid UTF-8 in sender: "node-a" -> "node-\xff"
        assertRefused("MALFORMED_ENVELOPE", Hex.decode(hex.replaceFirst("0c6e6f64652d6102", "0c6e6f64652dff02")));
        // upper-case event id
        assertRefused("MALFORMED_ENVELOPE", Hex.decode(hex.replaceFirst("^4830303030303030302d303030302d343030302d38", "4830303030303030302d303030302d343030302d38").replace("3030303030303030303030313669", "3030303030303030303030413669")));
    }

    @Test
    void signatureWithSPlusL() throws Exception {
        JsonNode c = heartbeatCase();
        byte[] sig = Hex.decode(c.get("signature_hex").asText());
        byte[] msg = Hex.decode(c.get("signing_bytes_hex").asText());
        assertTrue(Ed25519.verifyStrict(pub(), msg, sig));
        BigInteger s = Ed25519.le(sig, 32, 32).add(Ed25519.L);
        assertTrue(s.bitLength() <= 256);
        byte[] be = s.toByteArray();
        byte[] bad = sig.clone();
        for (int i = 0; i < 32; i++) bad[32 + i] = i < be.length ? be[be.length - 1 - i] : 0;
        assertFalse(Ed25519.verifyStrict(pub(), msg, bad));
        assertFalse(Ed25519.verifyOpenssl(pub(), msg, bad));
    }

    @Test
    void flippedBit() throws Exception {
        JsonNode c = heartbeatCase();
        byte[] msg = Hex.decode(c.get("signing_bytes_hex").asText());
        for (int bit : new int[] {0, 7, 255, 300, 511}) {
            byte[] sig = Hex.decode(c.get("signature_hex").asText());
            sig[bit / 8] ^= (byte) (1 << (bit % 8));
            assertFalse(Ed25519.verifyStrict(pub(), msg, sig), "bit " + bit);
        }
        byte[] sig = Hex.decode(c.get("signature_hex").asText());
        byte[] m2 = msg.clone();
        m2[m2.length - 3] ^= 1;
        assertFalse(Ed25519.verifyStrict(pub(), m2, sig));
        assertFalse(Ed25519.verifyStrict(pub(), msg, Arrays.copyOf(sig, 63)));
    }

    @Test
    void smallOrderPublicKey() throws Exception {
        // A = identity (y = 1) with R = identity and S = 0 satisfies the cofactorless equation
        // [0]B - [k]A = identity = R for every message: JDK-only verification would accept it.
        byte[] ident = new byte[32];
        ident[0] = 1;
        byte[] sig = new byte[64];
        sig[0] = 1;
        byte[] msg = "anything".getBytes();
        assertTrue(Ed25519.hasSmallOrder(ident));
        assertFalse(Ed25519.verifyStrict(ident, msg, sig));
        // every blocklisted encoding, also with the sign bit set, is refused as a key
        byte[] good = pub();
        assertFalse(Ed25519.hasSmallOrder(good));
        byte[] order8 = Hex.decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85");
        assertTrue(Ed25519.hasSmallOrder(order8));
        assertFalse(Ed25519.verifyStrict(order8, msg, sig));
        // non-canonical key encoding (y >= p)
        byte[] nonCanon = Hex.decode("efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assertFalse(Ed25519.isCanonicalPoint(nonCanon));
        assertFalse(Ed25519.verifyStrict(nonCanon, msg, sig));
    }

    @Test
    void smallOrderR() throws Exception {
        JsonNode c = heartbeatCase();
        byte[] msg = Hex.decode(c.get("signing_bytes_hex").asText());
        byte[] sig = Hex.decode(c.get("signature_hex").asText());
        byte[] bad = sig.clone();
        Arrays.fill(bad, 0, 32, (byte) 0);
        bad[0] = 1;
        assertFalse(Ed25519.verifyStrict(pub(), msg, bad));
    }

    @Test
    void strictPayloadDecoding() throws Exception {
        var hb = Schemas.get(Schemas.HEARTBEAT).schema;
        // interval 10000 = a0 9c 01; non-minimal a0 9c 81 00
        assertThrows(AvroCodec.DecodeException.class, () -> AvroCodec.decodeStrict(hb, Hex.decode("0c6e6f64652d61a09c8100")));
        assertThrows(AvroCodec.DecodeException.class, () -> AvroCodec.decodeStrict(hb, Hex.decode("0c6e6f64652d61a09c0100")));
        assertNotNull(AvroCodec.decodeStrict(hb, Hex.decode("0c6e6f64652d61a09c01")));
        var chunk = Schemas.get(Schemas.CHUNK).schema;
        // int beyond 32 bits: index = ff ff ff ff 1f (2^32-1 zigzag) is 5 bytes with high bits set
        assertThrows(AvroCodec.DecodeException.class, () -> AvroCodec.decodeStrict(chunk, Hex.decode("00ffffffff7f020200")));
    }
}
