package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * tests/vectors/identity.json: every certificate and CSR gets the reference's verdict (protocol.md
 * §5.2, §5.4, §5.6), and an accepted one reads the same node id, role, serial, times and key.
 */
class IdentityTest {
    @Test
    void everyCaseGetsTheReferenceVerdict() throws Exception {
        JsonNode v = VectorsTest.load("identity.json");
        Cert root = Cert.parse(Hex.decode(v.get("root_der_hex").asText()));
        List<String> wrong = new ArrayList<>();
        int accepted = 0, refused = 0;
        for (JsonNode c : v.get("cases")) {
            byte[] der = Hex.decode(c.get("der_hex").asText());
            String label = c.get("kind").asText() + " " + c.get("name").asText();
            boolean expectAccept = c.get("verdict").asText().equals("accept");
            try {
                if (c.get("kind").asText().equals("certificate")) {
                    Cert cert = Cert.accept(der, root);
                    if (expectAccept) {
                        assertEquals(c.get("node_id").asText(), cert.commonName, label);
                        assertEquals(c.get("role").asText(), cert.role, label);
                        assertEquals(c.get("serial").asText(), cert.serialHex, label);
                        assertEquals(c.get("not_before_ms").asLong(), cert.notBeforeMs, label);
                        assertEquals(c.get("not_after_ms").asLong(), cert.notAfterMs, label);
                        assertEquals(c.get("public_key_hex").asText(), Hex.encode(cert.publicKey), label);
                    }
                } else {
                    Csr csr = Csr.parseAndVerify(der);
                    if (expectAccept) {
                        List<String> cns = new ArrayList<>();
                        c.get("common_names").forEach(x -> cns.add(x.asText()));
                        assertEquals(cns, csr.commonNames, label);
                        assertEquals(c.get("public_key_hex").asText(), Hex.encode(csr.publicKey), label);
                    }
                }
                accepted++;
                if (!expectAccept) wrong.add(label + ": accepted, the reference refuses it");
            } catch (ProtocolException e) {
                refused++;
                assertEquals("INVALID_CERTIFICATE", e.reason, label);
                if (expectAccept) wrong.add(label + ": refused (" + e.getMessage() + "), the reference accepts it");
            }
        }
        assertTrue(wrong.isEmpty(), String.join("\n", wrong));
        assertTrue(accepted >= 5 && refused >= 30, "identity.json holds both kinds of case");
    }

    @Test
    void ownCertificateIsUsableOnlyWithinItsValidityAndBeforeRevocation() throws Exception {
        JsonNode v = VectorsTest.load("identity.json");
        Cert root = Cert.parse(Hex.decode(v.get("root_der_hex").asText()));
        Cert c = null;
        for (JsonNode x : v.get("cases")) {
            if (x.get("name").asText().equals("accepted")) c = Cert.accept(Hex.decode(x.get("der_hex").asText()), root);
        }
        assertNotNull(c);
        assertFalse(Membership.usableAt(c, null, c.notBeforeMs - 1)); // before notBefore (no skew here, §7)
        assertTrue(Membership.usableAt(c, null, c.notBeforeMs));
        assertTrue(Membership.usableAt(c, null, c.notAfterMs));
        assertFalse(Membership.usableAt(c, null, c.notAfterMs + 1));
        assertTrue(Membership.usableAt(c, c.notBeforeMs + 10, c.notBeforeMs + 9));
        assertFalse(Membership.usableAt(c, c.notBeforeMs + 10, c.notBeforeMs + 10));
    }
}
