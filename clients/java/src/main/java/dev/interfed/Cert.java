package dev.interfed;

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

    static final byte[] V3 = Hex.decode("a003020102");

    /**
     * §5.2 steps 1-2 and the §5.6 profile (structure), without the issuer and signature checks.
     * The JDK's CertificateFactory is not used: it accepts BER leniencies, v1 and v2 certificates
     * and other key encodings that the protocol refuses.
     */
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
            if (t.size() < 7 || !Arrays.equals(t.get(0).encoded(), V3)) throw new Der.DerException("TBSCertificate must start with version v3 (a0 03 02 01 02)");
            String serialHex = Der.positiveInteger(t.get(1), 20).toString(16);
            if (!Arrays.equals(t.get(2).encoded(), Der.ALG_ED25519)) {
                throw new ProtocolException("INVALID_CERTIFICATE", "TBSCertificate signature field is not Ed25519");
            }
            List<List<String[]>> issuer = Der.name(t.get(3));
            List<Der.Tlv> validity = Der.expect(t.get(4), 0x30).children();
            if (validity.size() != 2) throw new Der.DerException("bad Validity");
            long nb = time(validity.get(0)), na = time(validity.get(1));
            List<List<String[]>> subject = Der.name(t.get(5));
            byte[] spki = t.get(6).encoded();
            if (spki.length != 44 || !Arrays.equals(Arrays.copyOf(spki, 12), Der.SPKI_ED25519_PREFIX)) {
                throw new ProtocolException("INVALID_CERTIFICATE", "subject public key is not exactly an Ed25519 SubjectPublicKeyInfo");
            }
            byte[] pk = Arrays.copyOfRange(spki, 12, 44);
            // OpenSSL reads y mod p, the JDK refuses y >= p: one verdict only if such keys are refused here (§5.6)
            if (!Ed25519.isCanonicalPoint(pk)) throw new ProtocolException("INVALID_CERTIFICATE", "public key is not a canonical Ed25519 encoding (y >= p)");
            if (t.size() > 8 || (t.size() == 8 && t.get(7).tag != 0xa3)) {
                throw new Der.DerException("only [3] extensions may follow the subject key (no unique identifiers)");
            }
            if (t.size() == 8) extensions(t.get(7));
            return new Cert(der, serialHex, issuer, subject, nb, na, pk, true, tbs.encoded(), Arrays.copyOfRange(sb, 3, 67));
        } catch (Der.DerException | RuntimeException e) {
            throw new ProtocolException("INVALID_CERTIFICATE", "certificate does not parse: " + e.getMessage());
        }
    }

    /** [3] { SEQUENCE SIZE (1..) OF Extension }: shape only, each OID once; values are not interpreted. */
    static void extensions(Der.Tlv explicit) throws Der.DerException {
        List<Der.Tlv> wrapped = explicit.children();
        if (wrapped.size() != 1) throw new Der.DerException("[3] must hold one SEQUENCE of extensions");
        List<Der.Tlv> exts = Der.expect(wrapped.get(0), 0x30).children();
        if (exts.isEmpty()) throw new Der.DerException("empty extensions");
        java.util.Set<String> seen = new java.util.HashSet<>();
        for (Der.Tlv ext : exts) {
            List<Der.Tlv> p = Der.expect(ext, 0x30).children();
            if (p.size() < 2 || p.size() > 3 || p.get(p.size() - 1).tag != 0x04) throw new Der.DerException("bad Extension");
            if (p.size() == 3 && !Arrays.equals(p.get(1).encoded(), new byte[] {0x01, 0x01, (byte) 0xff})) {
                throw new Der.DerException("critical must be omitted or DER TRUE (01 01 ff)");
            }
            if (!seen.add(Der.oid(p.get(0)))) throw new Der.DerException("an extension appears twice");
        }
    }

    static long time(Der.Tlv t) throws Der.DerException {
        String s = new String(t.content(), java.nio.charset.StandardCharsets.ISO_8859_1);
        int year, i;
        if (t.tag == 0x17) { // UTCTime YYMMDDHHMMSSZ
            if (!s.matches("[0-9]{12}Z")) throw new Der.DerException("bad UTCTime");
            int yy = Integer.parseInt(s.substring(0, 2));
            year = yy < 50 ? 2000 + yy : 1900 + yy;
            i = 2;
        } else if (t.tag == 0x18) { // GeneralizedTime YYYYMMDDHHMMSSZ, only from 2050 on (RFC 5280 4.1.2.5)
            if (!s.matches("[0-9]{14}Z")) throw new Der.DerException("bad GeneralizedTime");
            year = Integer.parseInt(s.substring(0, 4));
            if (year < 2050) throw new Der.DerException("GeneralizedTime before 2050");
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
