package dev.interfed;

import java.math.BigInteger;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;

/** An X.509 certificate checked as in protocol.md §5.2. */
public final class Cert {
    public final byte[] der;
    public final String serialHex;
    public final List<List<String[]>> issuer, subject;
    public final long notBeforeMs, notAfterMs;
    public final byte[] publicKey;
    public final String commonName; // first CN: the node id
    public final String role;       // first OU
    final byte[] tbs, signature;
    final boolean ed25519Key;

    private Cert(byte[] der, String serialHex, List<List<String[]>> issuer, List<List<String[]>> subject,
                 long nb, long na, byte[] pk, boolean ed, byte[] tbs, byte[] sig) {
        this.der = der;
        this.serialHex = serialHex;
        this.issuer = issuer;
        this.subject = subject;
        this.notBeforeMs = nb;
        this.notAfterMs = na;
        this.publicKey = pk;
        this.ed25519Key = ed;
        this.tbs = tbs;
        this.signature = sig;
        List<String> cns = Der.values(subject, Der.OID_CN);
        List<String> ous = Der.values(subject, Der.OID_OU);
        this.commonName = cns.isEmpty() ? null : cns.get(0);
        this.role = ous.isEmpty() ? null : ous.get(0);
    }

    /** §5.2 steps 1-2 (structure), without the issuer check. */
    public static Cert parse(byte[] der) throws ProtocolException {
        try {
            Der.Tlv top = Der.expect(Der.parseExactly(der), 0x30);
            List<Der.Tlv> parts = top.children();
            if (parts.size() != 3) throw new Der.DerException("certificate must have exactly 3 parts");
            Der.Tlv tbs = Der.expect(parts.get(0), 0x30);
            if (!Arrays.equals(parts.get(1).encoded(), Der.ALG_ED25519)) {
                throw new ProtocolException("INVALID_CERTIFICATE", "certificate is not exactly Ed25519-signed");
            }
            Der.Tlv sigBits = parts.get(2);
            byte[] sb = sigBits.encoded();
            if (sb.length != 67 || sb[0] != 0x03 || sb[1] != 0x41 || sb[2] != 0) {
                throw new ProtocolException("INVALID_CERTIFICATE", "certificate signature is not 03 41 00 || 64 bytes");
            }
            List<Der.Tlv> t = tbs.children();
            if (t.size() < 7 || t.get(0).tag != 0xa0) throw new Der.DerException("TBSCertificate needs an explicit [0] version");
            Der.Tlv serial = Der.expect(t.get(1), 0x02);
            if (!Arrays.equals(t.get(2).encoded(), Der.ALG_ED25519)) {
                throw new ProtocolException("INVALID_CERTIFICATE", "TBSCertificate signature field is not Ed25519");
            }
            List<List<String[]>> issuer = Der.name(t.get(3));
            List<Der.Tlv> validity = Der.expect(t.get(4), 0x30).children();
            if (validity.size() != 2) throw new Der.DerException("bad Validity");
            long nb = time(validity.get(0)), na = time(validity.get(1));
            List<List<String[]>> subject = Der.name(t.get(5));
            List<Der.Tlv> spki = Der.expect(t.get(6), 0x30).children();
            if (spki.size() != 2) throw new Der.DerException("bad SubjectPublicKeyInfo");
            List<Der.Tlv> alg = Der.expect(spki.get(0), 0x30).children();
            boolean ed = !alg.isEmpty() && Der.oid(alg.get(0)).equals(Der.OID_ED25519) && alg.size() == 1;
            byte[] bits = Der.expect(spki.get(1), 0x03).content();
            byte[] pk = bits.length >= 1 ? Arrays.copyOfRange(bits, 1, bits.length) : new byte[0];
            if (ed && (bits.length != 33 || bits[0] != 0)) ed = false;
            String serialHex = new BigInteger(serial.content()).toString(16);
            return new Cert(der, serialHex, issuer, subject, nb, na, pk, ed, tbs.encoded(), Arrays.copyOfRange(sb, 3, 67));
        } catch (Der.DerException | RuntimeException e) {
            throw new ProtocolException("INVALID_CERTIFICATE", "certificate does not parse: " + e.getMessage());
        }
    }

    static long time(Der.Tlv t) throws Der.DerException {
        String s = new String(t.content(), java.nio.charset.StandardCharsets.US_ASCII);
        int year, i;
        if (t.tag == 0x17) { // UTCTime YYMMDDHHMMSSZ
            if (s.length() != 13 || !s.endsWith("Z")) throw new Der.DerException("bad UTCTime");
            int yy = Integer.parseInt(s.substring(0, 2));
            year = yy < 50 ? 2000 + yy : 1900 + yy;
            i = 2;
        } else if (t.tag == 0x18) { // GeneralizedTime YYYYMMDDHHMMSSZ
            if (s.length() != 15 || !s.endsWith("Z")) throw new Der.DerException("bad GeneralizedTime");
            year = Integer.parseInt(s.substring(0, 4));
            i = 4;
        } else {
            throw new Der.DerException("bad time type");
        }
        LocalDateTime dt = LocalDateTime.of(year, Integer.parseInt(s.substring(i, i + 2)), Integer.parseInt(s.substring(i + 2, i + 4)),
                Integer.parseInt(s.substring(i + 4, i + 6)), Integer.parseInt(s.substring(i + 6, i + 8)), Integer.parseInt(s.substring(i + 8, i + 10)));
        return dt.toEpochSecond(ZoneOffset.UTC) * 1000L;
    }

    /** Full §5.2 acceptance against a root; any failure is INVALID_CERTIFICATE. */
    public static Cert accept(byte[] der, Cert root) throws ProtocolException {
        Cert c = parse(der);
        if (!Der.sameName(c.issuer, root.subject)) throw new ProtocolException("INVALID_CERTIFICATE", "issuer is not the federation root");
        if (!Ed25519.verifyOpenssl(root.publicKey, c.tbs, c.signature)) {
            throw new ProtocolException("INVALID_CERTIFICATE", "certificate signature does not verify under the root key");
        }
        if (!c.ed25519Key) throw new ProtocolException("INVALID_CERTIFICATE", "subject public key is not Ed25519");
        if (c.commonName == null) throw new ProtocolException("INVALID_CERTIFICATE", "certificate has no CN");
        if (!"node".equals(c.role) && !"operator".equals(c.role)) {
            throw new ProtocolException("INVALID_CERTIFICATE", "certificate role (first OU) is not node or operator");
        }
        return c;
    }

    public static byte[] pemToDer(String pem) {
        StringBuilder b64 = new StringBuilder();
        boolean in = false;
        for (String line : pem.split("\\r?\\n")) {
            if (line.startsWith("-----BEGIN")) { in = true; continue; }
            if (line.startsWith("-----END")) break;
            if (in) b64.append(line.trim());
        }
        return Base64.getDecoder().decode(b64.toString());
    }

    public static String derToPem(byte[] der, String label) {
        String b = Base64.getMimeEncoder(64, new byte[] {'\n'}).encodeToString(der);
        return "-----BEGIN " + label + "-----\n" + b + "\n-----END " + label + "-----\n";
    }
}
