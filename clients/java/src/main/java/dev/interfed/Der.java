package dev.interfed;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Minimal strict DER reader and writer (definite lengths, minimal length octets). */
public final class Der {
    private Der() {}

    /** One TLV: tag byte, content range and the full encoding range within buf. */
    public static final class Tlv {
        public final byte[] buf;
        public final int tag, start, contentStart, end;

        Tlv(byte[] buf, int tag, int start, int contentStart, int end) {
            this.buf = buf;
            this.tag = tag;
            this.start = start;
            this.contentStart = contentStart;
            this.end = end;
        }

        public byte[] content() {
            return Arrays.copyOfRange(buf, contentStart, end);
        }

        public byte[] encoded() {
            return Arrays.copyOfRange(buf, start, end);
        }

        public List<Tlv> children() throws DerException {
            List<Tlv> out = new ArrayList<>();
            int p = contentStart;
            while (p < end) {
                Tlv t = read(buf, p, end);
                out.add(t);
                p = t.end;
            }
            return out;
        }
    }

    public static final class DerException extends Exception {
        public DerException(String m) {
            super(m);
        }
    }

    public static Tlv read(byte[] buf, int pos, int limit) throws DerException {
        if (pos >= limit) throw new DerException("truncated DER");
        int tag = buf[pos] & 0xff;
        if ((tag & 0x1f) == 0x1f) throw new DerException("high tag numbers not supported");
        if (pos + 1 >= limit) throw new DerException("truncated DER length");
        int b = buf[pos + 1] & 0xff;
        int len, cs;
        if (b < 0x80) {
            len = b;
            cs = pos + 2;
        } else {
            int n = b & 0x7f;
            if (n == 0 || n > 4) throw new DerException("unsupported DER length");
            if (pos + 2 + n > limit) throw new DerException("truncated DER length");
            if ((buf[pos + 2] & 0xff) == 0) throw new DerException("non-minimal DER length");
            len = 0;
            for (int i = 0; i < n; i++) len = (len << 8) | (buf[pos + 2 + i] & 0xff);
            if (len < 0x80) throw new DerException("non-minimal DER length");
            if (len < 0) throw new DerException("DER length overflow");
            cs = pos + 2 + n;
        }
        if ((long) cs + len > limit) throw new DerException("truncated DER value");
        return new Tlv(buf, tag, pos, cs, cs + len);
    }

    /** Parses exactly one TLV spanning all of buf. */
    public static Tlv parseExactly(byte[] buf) throws DerException {
        Tlv t = read(buf, 0, buf.length);
        if (t.end != buf.length) throw new DerException("trailing bytes after DER value");
        return t;
    }

    public static Tlv expect(Tlv t, int tag) throws DerException {
        if (t.tag != tag) throw new DerException(String.format("expected tag %02x, got %02x", tag, t.tag));
        return t;
    }

    public static String oid(Tlv t) throws DerException {
        expect(t, 0x06);
        byte[] c = t.content();
        if (c.length == 0 || (c[c.length - 1] & 0x80) != 0) throw new DerException("malformed OID");
        StringBuilder sb = new StringBuilder();
        long v = 0;
        boolean first = true, startOfArc = true;
        for (byte x : c) {
            // DER: a subidentifier never starts with 0x80 (that would be a leading zero septet)
            if (startOfArc && (x & 0xff) == 0x80) throw new DerException("non-minimal OID");
            v = (v << 7) | (x & 0x7f);
            startOfArc = (x & 0x80) == 0;
            if (startOfArc) {
                if (first) {
                    long a = Math.min(v / 40, 2);
                    sb.append(a).append('.').append(v - 40 * a);
                    first = false;
                } else {
                    sb.append('.').append(v);
                }
                v = 0;
            }
        }
        return sb.toString();
    }

    private static final java.util.regex.Pattern PRINTABLE = java.util.regex.Pattern.compile("[A-Za-z0-9 '()+,\\-./:=?]*");

    /**
     * A name attribute value (protocol.md §5.6): a UTF8String holding valid UTF-8, or a
     * PrintableString within its character set. Every other string type is refused, so that every
     * implementation reads the same text from the same bytes.
     */
    public static String string(Tlv t) throws DerException {
        byte[] c = t.content();
        switch (t.tag) {
            case 0x0c:
                try {
                    return AvroCodec.strictUtf8(c, c.length);
                } catch (java.io.IOException e) {
                    throw new DerException("invalid UTF-8 in a UTF8String");
                }
            case 0x13: {
                String s = new String(c, StandardCharsets.ISO_8859_1);
                if (!PRINTABLE.matcher(s).matches()) throw new DerException("character outside PrintableString");
                return s;
            }
            default:
                throw new DerException(String.format("name values must be UTF8String or PrintableString, not tag %02x", t.tag));
        }
    }

    /** A DER INTEGER's content that is minimal, positive and at most maxOctets long. */
    public static java.math.BigInteger positiveInteger(Tlv t, int maxOctets) throws DerException {
        expect(t, 0x02);
        byte[] c = t.content();
        if (c.length == 0 || c.length > maxOctets) throw new DerException("INTEGER of " + c.length + " octets");
        if (c.length > 1 && c[0] == 0 && (c[1] & 0x80) == 0) throw new DerException("non-minimal INTEGER");
        java.math.BigInteger v = new java.math.BigInteger(c);
        if (v.signum() <= 0) throw new DerException("INTEGER must be positive");
        return v;
    }

    /** A Name as a list of RDNs, each a list of {oid, value}. */
    public static List<List<String[]>> name(Tlv t) throws DerException {
        expect(t, 0x30);
        List<List<String[]>> rdns = new ArrayList<>();
        for (Tlv set : t.children()) {
            expect(set, 0x31);
            List<String[]> rdn = new ArrayList<>();
            if (set.children().size() != 1) throw new DerException("an RDN must hold exactly one attribute");
            for (Tlv atv : set.children()) {
                expect(atv, 0x30);
                List<Tlv> kv = atv.children();
                if (kv.size() != 2) throw new DerException("bad AttributeTypeAndValue");
                rdn.add(new String[] {oid(kv.get(0)), string(kv.get(1))});
            }
            rdns.add(rdn);
        }
        return rdns;
    }

    public static boolean sameName(List<List<String[]>> a, List<List<String[]>> b) {
        if (a.size() != b.size()) return false;
        for (int i = 0; i < a.size(); i++) {
            if (a.get(i).size() != b.get(i).size()) return false;
            for (int j = 0; j < a.get(i).size(); j++) {
                if (!Arrays.equals(a.get(i).get(j), b.get(i).get(j))) return false;
            }
        }
        return true;
    }

    public static List<String> values(List<List<String[]>> name, String oid) {
        List<String> out = new ArrayList<>();
        for (List<String[]> rdn : name) for (String[] kv : rdn) if (kv[0].equals(oid)) out.add(kv[1]);
        return out;
    }

    // ---- writer ----

    public static byte[] tlv(int tag, byte[]... parts) {
        ByteArrayOutputStream content = new ByteArrayOutputStream();
        for (byte[] p : parts) content.writeBytes(p);
        byte[] c = content.toByteArray();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(tag);
        int len = c.length;
        if (len < 0x80) {
            out.write(len);
        } else if (len < 0x100) {
            out.write(0x81);
            out.write(len);
        } else if (len < 0x10000) {
            out.write(0x82);
            out.write(len >> 8);
            out.write(len);
        } else {
            out.write(0x83);
            out.write(len >> 16);
            out.write(len >> 8);
            out.write(len);
        }
        out.writeBytes(c);
        return out.toByteArray();
    }

    public static byte[] seq(byte[]... parts) {
        return tlv(0x30, parts);
    }

    public static byte[] oidBytes(String dotted) {
        String[] p = dotted.split("\\.");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(Integer.parseInt(p[0]) * 40 + Integer.parseInt(p[1]));
        for (int i = 2; i < p.length; i++) {
            long v = Long.parseLong(p[i]);
            int n = 0;
            byte[] tmp = new byte[10];
            do {
                tmp[n++] = (byte) (v & 0x7f);
                v >>>= 7;
            } while (v != 0);
            for (int j = n - 1; j >= 0; j--) out.write(tmp[j] | (j > 0 ? 0x80 : 0));
        }
        return tlv(0x06, out.toByteArray());
    }

    public static byte[] utf8(String s) {
        return tlv(0x0c, s.getBytes(StandardCharsets.UTF_8));
    }

    public static final String OID_CN = "2.5.4.3";
    public static final String OID_O = "2.5.4.10";
    public static final String OID_OU = "2.5.4.11";
    public static final String OID_ED25519 = "1.3.101.112";
    /** SubjectPublicKeyInfo of an Ed25519 key up to its 32 key bytes (RFC 8410, 0 unused bits). */
    public static final byte[] SPKI_ED25519_PREFIX = Hex.decode("302a300506032b6570032100");
    /** AlgorithmIdentifier Ed25519, no parameters (RFC 8410). */
    public static final byte[] ALG_ED25519 = Hex.decode("300506032b6570");
}
