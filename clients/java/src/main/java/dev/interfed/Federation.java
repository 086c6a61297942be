package dev.interfed;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.LinkedHashMap;
import java.util.Map;

/** The federation folder (protocol.md §5.3): root, operator certificates, agreement. */
public final class Federation {
    public final Cert root;
    public final Map<String, Cert> operators = new LinkedHashMap<>(); // node id -> certificate
    public final byte[] agreementSha256;

    public Federation(Path dir) throws IOException, ProtocolException {
        Path rootPem = dir.resolve("root.pem");
        if (!Files.exists(rootPem)) throw new IOException("no root.pem in " + dir);
        root = Cert.parse(Cert.pemToDer(Files.readString(rootPem)));
        if (!root.ed25519Key) throw new IOException("root key is not Ed25519");
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "operator-*.pem")) {
            for (Path p : ds) {
                // As the reference does (§5.3): role taken from the OU, file name not compared, and a
                // certificate that fails §5.2 makes the folder unusable (not skipped: that would leave
                // this party with fewer operators than the others).
                Cert c;
                try {
                    c = Cert.accept(Cert.pemToDer(Files.readString(p)), root);
                } catch (ProtocolException e) {
                    throw new IOException(p + " is not a certificate of this federation: " + e.getMessage());
                }
                operators.put(c.commonName, c);
            }
        }
        Path agreement = dir.resolve("agreement.txt");
        byte[] a = Files.exists(agreement) ? Files.readAllBytes(agreement) : new byte[0];
        try {
            agreementSha256 = MessageDigest.getInstance("SHA-256").digest(a);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
