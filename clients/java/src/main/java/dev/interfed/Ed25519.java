package dev.interfed;

import java.math.BigInteger;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.Arrays;

/**
 * Ed25519 through the JDK, with the strict verification rules of protocol.md §4.2
 * (those of libsodium's crypto_sign_verify_detached) added in front of it.
 */
public final class Ed25519 {
    private Ed25519() {}

    static final BigInteger L = BigInteger.ONE.shiftLeft(252).add(new BigInteger("27742317777372353535851937790883648493"));
    static final BigInteger P = BigInteger.ONE.shiftLeft(255).subtract(BigInteger.valueOf(19));
    private static final byte[] SPKI_PREFIX = Hex.decode("302a300506032b6570032100");
    private static final byte[] PKCS8_PREFIX = Hex.decode("302e020100300506032b657004220420");

    /** libsodium's ge25519_has_small_order blocklist (compared with the sign bit cleared). */
    private static final byte[][] BLOCKLIST = {
        Hex.decode("0000000000000000000000000000000000000000000000000000000000000000"),
        Hex.decode("0100000000000000000000000000000000000000000000000000000000000000"),
        Hex.decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        Hex.decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        Hex.decode("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        Hex.decode("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        Hex.decode("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    };

    public static boolean hasSmallOrder(byte[] p) {
        if (p.length != 32) return true;
        for (byte[] bad : BLOCKLIST) {
            boolean eq = true;
            for (int i = 0; i < 31 && eq; i++) eq = p[i] == bad[i];
            if (eq && (p[31] & 0x7f) == bad[31]) return true;
        }
        return false;
    }

    /** The y coordinate (sign bit cleared) is < p. */
    public static boolean isCanonicalPoint(byte[] p) {
        if (p.length != 32) return false;
        byte[] be = new byte[32];
        for (int i = 0; i < 32; i++) be[i] = p[31 - i];
        be[0] &= 0x7f;
        return new BigInteger(1, be).compareTo(P) < 0;
    }

    static BigInteger le(byte[] b, int off, int len) {
        byte[] be = new byte[len];
        for (int i = 0; i < len; i++) be[i] = b[off + len - 1 - i];
        return new BigInteger(1, be);
    }

    public static boolean sIsCanonical(byte[] sig) {
        return sig.length == 64 && le(sig, 32, 32).compareTo(L) < 0;
    }

    public static PublicKey publicKey(byte[] raw) throws Exception {
        if (raw.length != 32) throw new IllegalArgumentException("Ed25519 public key must be 32 bytes");
        byte[] spki = Arrays.copyOf(SPKI_PREFIX, SPKI_PREFIX.length + 32);
        System.arraycopy(raw, 0, spki, SPKI_PREFIX.length, 32);
        return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(spki));
    }

    public static PrivateKey privateFromSeed(byte[] seed) throws Exception {
        byte[] p8 = Arrays.copyOf(PKCS8_PREFIX, PKCS8_PREFIX.length + 32);
        System.arraycopy(seed, 0, p8, PKCS8_PREFIX.length, 32);
        return KeyFactory.getInstance("Ed25519").generatePrivate(new PKCS8EncodedKeySpec(p8));
    }

    public static PrivateKey privateFromPkcs8(byte[] der) throws Exception {
        return KeyFactory.getInstance("Ed25519").generatePrivate(new PKCS8EncodedKeySpec(der));
    }

    /** Raw 32-byte public key of a JDK Ed25519 public key (last 32 bytes of its SPKI). */
    public static byte[] raw(PublicKey pk) {
        byte[] enc = pk.getEncoded();
        return Arrays.copyOfRange(enc, enc.length - 32, enc.length);
    }

    /** Seed of a JDK Ed25519 private key. */
    public static byte[] seed(PrivateKey k) {
        byte[] enc = k.getEncoded();
        return Arrays.copyOfRange(enc, enc.length - 32, enc.length);
    }

    /** Derives the public key from a private key (signs nothing). */
    public static byte[] publicFromPrivate(PrivateKey k) throws Exception {
        // The JDK has no public derivation API: generate with a fixed-seed SecureRandom.
        byte[] seed = seed(k);
        KeyPairGenerator g = KeyPairGenerator.getInstance("Ed25519");
        g.initialize(255, new FixedRandom(seed));
        KeyPair kp = g.generateKeyPair();
        if (!Arrays.equals(seed(kp.getPrivate()), seed)) throw new IllegalStateException("key derivation failed");
        return raw(kp.getPublic());
    }

    public static KeyPair generate() throws Exception {
        return KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
    }

    public static byte[] sign(PrivateKey k, byte[] msg) throws Exception {
        Signature s = Signature.getInstance("Ed25519");
        s.initSign(k);
        s.update(msg);
        return s.sign();
    }

    /** JDK verification plus S < L only (as OpenSSL checks it): for CSRs and certificates (§5.2, §5.4). */
    public static boolean verifyOpenssl(byte[] pub, byte[] msg, byte[] sig) {
        if (sig.length != 64 || pub.length != 32) return false;
        if (!sIsCanonical(sig)) return false;
        if (!isCanonicalPoint(Arrays.copyOf(sig, 32))) return false; // R encoding must round-trip exactly
        try {
            Signature s = Signature.getInstance("Ed25519");
            s.initVerify(publicKey(pub));
            s.update(msg);
            return s.verify(sig);
        } catch (Exception e) {
            return false;
        }
    }

    /** Strict envelope verification, protocol.md §4.2 rules 1-4. */
    public static boolean verifyStrict(byte[] pub, byte[] msg, byte[] sig) {
        if (sig.length != 64 || pub.length != 32) return false;
        if (!sIsCanonical(sig)) return false;                        // 1. S < L
        byte[] r = Arrays.copyOfRange(sig, 0, 32);
        if (hasSmallOrder(r)) return false;                          // 2. R not of small order
        if (!isCanonicalPoint(pub) || hasSmallOrder(pub)) return false; // 3. A canonical, not small order
        if (!isCanonicalPoint(r)) return false;                      // 4. a non-canonical R never verifies
        try {
            Signature s = Signature.getInstance("Ed25519");
            s.initVerify(publicKey(pub));
            s.update(msg);
            return s.verify(sig);                                    // 3 (decodes) and 4 (equation)
        } catch (Exception e) {
            return false;
        }
    }

    /** A SecureRandom that returns a fixed seed, to derive a key pair from a seed. */
    static final class FixedRandom extends java.security.SecureRandom {
        private final byte[] seed;

        FixedRandom(byte[] seed) {
            this.seed = seed.clone();
        }

        @Override
        public void nextBytes(byte[] bytes) {
            System.arraycopy(seed, 0, bytes, 0, Math.min(bytes.length, seed.length));
        }
    }
}
