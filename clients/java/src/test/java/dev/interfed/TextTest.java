package dev.interfed;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

/** protocol.md §7: dead-letter subjects and details as the reference writes them. */
class TextTest {
    static String subject(String keyHex) {
        return Main.deadLetterSubject(keyHex == null ? null : Hex.decode(keyHex));
    }

    @Test
    void invalidUtf8IsReplacedPerMaximalSubpart() {
        // expected values are Python's bytes.decode("utf-8", "replace")
        assertEquals("\ufffd\ufffd\ufffd", subject("eda080")); // the JDK's own decoder gives one U+FFFD here
        assertEquals("a\ufffd\ufffd", subject("61e282e282"));
        assertEquals("\ufffd\ufffd\ufffd\ufffd", subject("f4908080"));
        assertEquals("\ufffdA", subject("ff41"));
        assertEquals("node-a", subject("6e6f64652d61"));
    }

    @Test
    void noKeyOrEmptyKeyIsUnkeyed() {
        assertEquals("unkeyed", subject(null));
        assertEquals("unkeyed", subject(""));
    }

    @Test
    void cutsCountCodePointsNotUtf16Units() {
        String smiles = "\ud83d\ude00".repeat(300); // 300 code points, 600 UTF-16 units
        String cut = Main.deadLetterSubject(smiles.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        assertEquals(256, cut.codePointCount(0, cut.length()));
        assertEquals(512, cut.length());
        String detail = Text.firstCodePoints("x" + smiles.repeat(10), 2000);
        assertEquals(2000, detail.codePointCount(0, detail.length()));
        assertFalse(Character.isHighSurrogate(detail.charAt(detail.length() - 1)));
    }
}
