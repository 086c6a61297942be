package dev.interfed;

/**
 * Text rules of dead letters (protocol.md §7): lossy UTF-8 decoding and cutting by code points,
 * exactly as the reference does them, so that every party writes the same subject and key.
 */
public final class Text {
    private Text() {}

    /**
     * UTF-8 to text, each maximal invalid subsequence replaced by one U+FFFD (the WHATWG and Unicode
     * §3.9 "maximal subpart" practice, which Python's bytes.decode("utf-8", "replace") follows).
     * The JDK's REPLACE decoder does not: it turns an encoded surrogate (ed a0 80) into one U+FFFD,
     * where the practice gives three.
     */
    public static String decodeUtf8Replacing(byte[] b) {
        StringBuilder out = new StringBuilder(b.length);
        int needed = 0, seen = 0, cp = 0, lower = 0x80, upper = 0xbf;
        for (int i = 0; i < b.length; i++) {
            int x = b[i] & 0xff;
            if (needed == 0) {
                if (x <= 0x7f) {
                    out.append((char) x);
                } else if (x >= 0xc2 && x <= 0xdf) {
                    needed = 1;
                    cp = x & 0x1f;
                } else if (x >= 0xe0 && x <= 0xef) {
                    if (x == 0xe0) lower = 0xa0;
                    if (x == 0xed) upper = 0x9f;
                    needed = 2;
                    cp = x & 0x0f;
                } else if (x >= 0xf0 && x <= 0xf4) {
                    if (x == 0xf0) lower = 0x90;
                    if (x == 0xf4) upper = 0x8f;
                    needed = 3;
                    cp = x & 0x07;
                } else {
                    out.append('\ufffd');
                }
                continue;
            }
            if (x < lower || x > upper) {
                out.append('\ufffd');
                needed = seen = cp = 0;
                lower = 0x80;
                upper = 0xbf;
                i--; // this byte starts afresh
                continue;
            }
            lower = 0x80;
            upper = 0xbf;
            cp = (cp << 6) | (x & 0x3f);
            if (++seen == needed) {
                out.appendCodePoint(cp);
                needed = seen = cp = 0;
            }
        }
        if (needed != 0) out.append('\ufffd');
        return out.toString();
    }

    /** The first n code points of s (not UTF-16 units: a cut never splits a surrogate pair). */
    public static String firstCodePoints(String s, int n) {
        if (s.codePointCount(0, s.length()) <= n) return s;
        return s.substring(0, s.offsetByCodePoints(0, n));
    }
}
