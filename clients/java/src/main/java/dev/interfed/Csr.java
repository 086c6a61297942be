package dev.interfed;

import java.security.PrivateKey;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** DER PKCS#10 certification requests with Ed25519 (protocol.md §5.4), built and checked by hand. */
public final class Csr {
    public final byte[] publicKey;
    public final List<String> commonNames;

    private Csr(byte[] publicKey, List<String> cns) {
        this.publicKey = publicKey;
        this.commonNames = cns;
    }

    /** Builds a CSR with subject CN=nodeId, O=institution (O left out if empty), no attributes. */
    public static byte[] build(PrivateKey key, byte[] publicKey, String nodeId, String institution) throws Exception {
        List<byte[]> rdns = new ArrayList<>();
        rdns.add(Der.tlv(0x31, Der.seq(Der.oidBytes(Der.OID_CN), Der.utf8(nodeId))));
        if (institution != null && !institution.isEmpty()) {
            rdns.add(Der.tlv(0x31, Der.seq(Der.oidBytes(Der.OID_O), Der.utf8(institution))));
        }
        byte[] subject = Der.seq(rdns.toArray(new byte[0][]));
        byte[] spki = Der.seq(Der.ALG_ED25519, Der.tlv(0x03, concat(new byte[] {0}, publicKey)));
        byte[] info = Der.seq(Der.tlv(0x02, new byte[] {0}), subject, spki, Der.tlv(0xa0));
        byte[] sig = Ed25519.sign(key, info);
        return Der.seq(info, Der.ALG_ED25519, Der.tlv(0x03, concat(new byte[] {0}, sig)));
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /**
     * §5.4 items 1-2: parses as DER PKCS#10 with an Ed25519 key, and its self-signature verifies
     * (S &lt; L, no small-order checks). Any failure is INVALID_CERTIFICATE.
     */
    public static Csr parseAndVerify(byte[] der) throws ProtocolException {
        try {
            Der.Tlv top = Der.expect(Der.parseExactly(der), 0x30);
            List<Der.Tlv> parts = top.children();
            if (parts.size() != 3) throw new Der.DerException("CSR must have 3 parts");
            Der.Tlv info = Der.expect(parts.get(0), 0x30);
            if (!Arrays.equals(parts.get(1).encoded(), Der.ALG_ED25519)) {
                throw new ProtocolException("INVALID_CERTIFICATE", "CSR is not exactly Ed25519-signed");
            }
            byte[] sb = parts.get(2).encoded();
            if (sb.length != 67 || sb[0] != 0x03 || sb[1] != 0x41 || sb[2] != 0) {
                throw new ProtocolException("INVALID_CERTIFICATE", "CSR signature is not 03 41 00 || 64 bytes");
            }
            List<Der.Tlv> ic = info.children();
            // §5.4: { version 0, subject, Ed25519 key, empty attributes [0] }, nothing else
            if (ic.size() != 4 || !Arrays.equals(ic.get(0).encoded(), new byte[] {0x02, 0x01, 0x00})
                    || !Arrays.equals(ic.get(3).encoded(), new byte[] {(byte) 0xa0, 0x00})) {
                throw new Der.DerException("CertificationRequestInfo must be { version 0, subject, key, empty attributes }");
            }
            List<List<String[]>> subject = Der.name(ic.get(1));
            byte[] spki = ic.get(2).encoded();
            if (spki.length != 44 || !Arrays.equals(Arrays.copyOf(spki, 12), Der.SPKI_ED25519_PREFIX)) {
                throw new ProtocolException("INVALID_CERTIFICATE", "CSR public key is not exactly an Ed25519 SubjectPublicKeyInfo");
            }
            byte[] pk = Arrays.copyOfRange(spki, 12, 44);
            // OpenSSL reads y mod p, the JDK refuses y >= p: one verdict only if such keys are refused here (§5.6)
            if (!Ed25519.isCanonicalPoint(pk)) throw new ProtocolException("INVALID_CERTIFICATE", "public key is not a canonical Ed25519 encoding (y >= p)");
            byte[] sig = Arrays.copyOfRange(sb, 3, 67);
            if (!Ed25519.verifyOpenssl(pk, info.encoded(), sig)) {
                throw new ProtocolException("INVALID_CERTIFICATE", "CSR self-signature does not verify");
            }
            return new Csr(pk, Der.values(subject, Der.OID_CN));
        } catch (Der.DerException | RuntimeException e) {
            throw new ProtocolException("INVALID_CERTIFICATE", "CSR does not parse: " + e.getMessage());
        }
    }
}
