package dev.interfed;

import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.stream.Stream;
import org.apache.avro.NameValidator;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;

/**
 * The built-in schemas (protocol.md §2.4), read from the repository's schemas/ folder, which the
 * build copies into the jar under interfed-schemas/. Nothing here restates a schema.
 */
public final class Schemas {
    public static final String RESOURCE_DIR = "interfed-schemas";
    public static final String ENVELOPE = "interfed.mesh.Envelope";
    public static final String SCHEMA_PUBLISHED = "interfed.mesh.SchemaPublished";
    public static final String CHUNK = "interfed.mesh.Chunk";
    public static final String DEAD_LETTER = "interfed.mesh.DeadLetter";
    public static final String JOIN_REQUESTED = "interfed.registry.JoinRequested";
    public static final String JOIN_APPROVED = "interfed.registry.JoinApproved";
    public static final String JOIN_REJECTED = "interfed.registry.JoinRejected";
    public static final String NODE_ANNOUNCED = "interfed.registry.NodeAnnounced";
    public static final String HEARTBEAT = "interfed.registry.Heartbeat";
    public static final String CONTRACT_TERMINATED = "interfed.registry.ContractTerminated";
    public static final String CERTIFICATE_REVOKED = "interfed.registry.CertificateRevoked";

    /** A schema with its file text, canonical form and fingerprint. */
    public static final class Entry {
        public final String path, json, canonical;
        public final Schema schema;
        public final byte[] fingerprint;

        Entry(String path, String json, Schema schema) {
            this.path = path;
            this.json = json;
            this.schema = schema;
            this.canonical = SchemaNormalization.toParsingForm(schema);
            this.fingerprint = fingerprint(schema);
        }

        public String fingerprintHex() {
            return Hex.encode(fingerprint);
        }
    }

    private static volatile Map<String, Entry> builtIn;

    /** CRC-64-AVRO of the parsing canonical form, 8 bytes little-endian (§2.2). */
    public static byte[] fingerprint(Schema s) {
        return le(SchemaNormalization.parsingFingerprint64(s));
    }

    public static byte[] fingerprintOfCanonical(String canonical) {
        return le(SchemaNormalization.fingerprint64(canonical.getBytes(StandardCharsets.UTF_8)));
    }

    static byte[] le(long v) {
        byte[] out = new byte[8];
        for (int i = 0; i < 8; i++) out[i] = (byte) (v >>> (8 * i));
        return out;
    }

    /** Parses one schema with the Avro spec's strict name rules. */
    public static Schema parse(String json) {
        return new Schema.Parser(NameValidator.STRICT_VALIDATOR).parse(json);
    }

    /** Built-in schemas keyed by full name, in path order. */
    public static Map<String, Entry> builtIn() {
        if (builtIn == null) {
            synchronized (Schemas.class) {
                if (builtIn == null) builtIn = load();
            }
        }
        return builtIn;
    }

    public static Entry get(String fullName) {
        Entry e = builtIn().get(fullName);
        if (e == null) throw new IllegalStateException("no built-in schema " + fullName);
        return e;
    }

    public static boolean isCore(String fullName) {
        return fullName.equals(ENVELOPE) || fullName.equals(SCHEMA_PUBLISHED) || fullName.equals(JOIN_REQUESTED);
    }

    private static Map<String, Entry> load() {
        try {
            TreeMap<String, String> files = new TreeMap<>(); // relative path -> json
            String override = System.getProperty("interfed.schemas", System.getenv("INTERFED_JAVA_SCHEMAS"));
            if (override != null && Files.isDirectory(Paths.get(override))) {
                readDir(Paths.get(override), files);
            } else {
                URL u = Schemas.class.getClassLoader().getResource(RESOURCE_DIR);
                if (u == null) throw new IllegalStateException("schemas resource folder missing from the build");
                if (u.getProtocol().equals("file")) {
                    readDir(Paths.get(u.toURI()), files);
                } else if (u.getProtocol().equals("jar")) {
                    String p = u.getPath();
                    String jarPath = p.substring("file:".length(), p.indexOf("!/"));
                    try (JarFile jf = new JarFile(java.net.URLDecoder.decode(jarPath, StandardCharsets.UTF_8))) {
                        Enumeration<JarEntry> en = jf.entries();
                        while (en.hasMoreElements()) {
                            JarEntry je = en.nextElement();
                            if (je.getName().startsWith(RESOURCE_DIR + "/") && je.getName().endsWith(".avsc")) {
                                try (InputStream in = jf.getInputStream(je)) {
                                    files.put(je.getName().substring(RESOURCE_DIR.length() + 1), new String(in.readAllBytes(), StandardCharsets.UTF_8));
                                }
                            }
                        }
                    }
                } else {
                    throw new IllegalStateException("cannot list " + u);
                }
            }
            Map<String, Entry> out = new LinkedHashMap<>();
            for (Map.Entry<String, String> f : files.entrySet()) {
                Schema s = parse(f.getValue());
                out.put(s.getFullName(), new Entry("schemas/" + f.getKey(), f.getValue(), s));
            }
            if (out.isEmpty()) throw new IllegalStateException("no built-in schemas found");
            return out;
        } catch (IOException | java.net.URISyntaxException e) {
            throw new IllegalStateException("cannot load built-in schemas: " + e, e);
        }
    }

    private static void readDir(Path root, Map<String, String> files) throws IOException {
        List<Path> all = new ArrayList<>();
        try (Stream<Path> s = Files.walk(root)) {
            s.filter(p -> p.toString().endsWith(".avsc")).forEach(all::add);
        }
        for (Path p : all) {
            files.put(root.relativize(p).toString().replace('\\', '/'), Files.readString(p));
        }
    }
}
