package dev.interfed;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.KeyPair;
import java.security.PrivateKey;
import java.util.Base64;
import java.util.Set;
import java.util.stream.Stream;

/** The node home of protocol.md §5.5. */
public final class NodeHome {
    static final ObjectMapper JSON = new ObjectMapper();
    public final Path dir;
    public final JsonNode config;
    public final String nodeId;

    private NodeHome(Path dir, JsonNode config) {
        this.dir = dir;
        this.config = config;
        this.nodeId = config.get("node_id").asText();
    }

    public static void init(Path home, Path federation, String nodeId, String institution, String platform,
                            String platformVersion, String name, String address, String description) throws Exception {
        if (Files.exists(home) && !(Files.isDirectory(home) && isEmpty(home))) {
            throw new IOException("home " + home + " already exists; refusing to overwrite it");
        }
        if (!Files.isRegularFile(federation.resolve("root.pem"))) throw new IOException("no root.pem in federation folder " + federation);
        new Federation(federation); // must load
        Files.createDirectories(home);
        Path fed = home.resolve("federation");
        Files.createDirectories(fed);
        try (Stream<Path> s = Files.list(federation)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                if (Files.isRegularFile(p)) Files.copy(p, fed.resolve(p.getFileName()), StandardCopyOption.COPY_ATTRIBUTES);
            }
        }
        KeyPair kp = Ed25519.generate();
        writePrivate(home.resolve("node.key"), pem(kp.getPrivate().getEncoded(), "PRIVATE KEY"));
        ObjectNode cfg = JSON.createObjectNode();
        cfg.put("node_id", nodeId);
        cfg.put("name", name == null ? nodeId : name);
        cfg.put("institution", institution);
        cfg.put("platform", platform);
        cfg.put("platform_version", platformVersion == null ? "" : platformVersion);
        cfg.put("address", address == null ? "" : address);
        cfg.put("description", description == null ? "" : description);
        cfg.put("role", "node");
        Files.writeString(home.resolve("node.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(cfg) + "\n");
        Files.createDirectories(home.resolve("logs"));
        SequenceCounter.create(home.resolve("state").resolve("sequence"));
    }

    static boolean isEmpty(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            return s.findAny().isEmpty();
        }
    }

    static String pem(byte[] der, String label) {
        return Cert.derToPem(der, label);
    }

    static void writePrivate(Path p, String content) throws IOException {
        Set<PosixFilePermission> perms = PosixFilePermissions.fromString("rw-------");
        Files.createFile(p, PosixFilePermissions.asFileAttribute(perms));
        Files.writeString(p, content);
        Files.setPosixFilePermissions(p, perms);
    }

    public static NodeHome load(Path home) throws IOException {
        Path cfg = home.resolve("node.json");
        if (!Files.isRegularFile(cfg)) throw new IOException("no node home at " + home + " (node.json missing)");
        return new NodeHome(home, JSON.readTree(Files.readString(cfg)));
    }

    public String cfg(String k) {
        JsonNode v = config.get(k);
        return v == null || v.isNull() ? "" : v.asText();
    }

    public PrivateKey key() throws Exception {
        Path p = dir.resolve("node.key");
        Set<PosixFilePermission> perms = Files.getPosixFilePermissions(p);
        for (PosixFilePermission x : perms) {
            if (x != PosixFilePermission.OWNER_READ && x != PosixFilePermission.OWNER_WRITE && x != PosixFilePermission.OWNER_EXECUTE) {
                throw new IOException("refusing to load " + p + ": it is readable or writable by group or others");
            }
        }
        return Ed25519.privateFromPkcs8(Cert.pemToDer(Files.readString(p)));
    }

    public Federation federation() throws Exception {
        return new Federation(dir.resolve("federation"));
    }

    public SequenceCounter sequence() throws IOException {
        return new SequenceCounter(dir.resolve("state").resolve("sequence"));
    }

    public Path certPath() {
        return dir.resolve("node.pem");
    }

    public String contractId() throws IOException {
        Path p = dir.resolve("state").resolve("contract.json");
        if (!Files.exists(p)) return null;
        JsonNode n = JSON.readTree(Files.readString(p));
        return n.has("contract_id") ? n.get("contract_id").asText() : null;
    }

    public void storeContract(String id) throws IOException {
        ObjectNode n = JSON.createObjectNode();
        n.put("contract_id", id);
        Path p = dir.resolve("state").resolve("contract.json");
        Path tmp = dir.resolve("state").resolve("contract.json.tmp");
        Files.writeString(tmp, JSON.writeValueAsString(n) + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, p, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    public void storeCertificate(byte[] der) throws IOException {
        Path tmp = dir.resolve("node.pem.tmp");
        Files.writeString(tmp, pem(der, "CERTIFICATE"));
        Files.move(tmp, certPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    static String b64(byte[] b) {
        return Base64.getEncoder().encodeToString(b);
    }
}
