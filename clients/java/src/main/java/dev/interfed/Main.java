package dev.interfed;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;

/** Command line of the Java interfed node. */
public final class Main {
    static final ObjectMapper JSON = new ObjectMapper();
    static final Pattern NODE_ID = Pattern.compile("^[a-z0-9][a-z0-9._-]{0,62}$");
    static final PrintStream OUT = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    static final class UsageException extends Exception {
        UsageException(String m) {
            super(m);
        }
    }

    /** --opt value options and --flag flags, checked against what a command accepts. */
    static final class Args {
        final Map<String, String> opts = new HashMap<>();
        final Set<String> flags = new HashSet<>();

        Args(String[] argv, int from, Set<String> valued, Set<String> flagNames) throws UsageException {
            for (int i = from; i < argv.length; i++) {
                String a = argv[i];
                if (!a.startsWith("--")) throw new UsageException("unexpected argument: " + a);
                String name = a.substring(2), value = null;
                int eq = name.indexOf('=');
                if (eq >= 0) {
                    value = name.substring(eq + 1);
                    name = name.substring(0, eq);
                }
                if (flagNames.contains(name) && value == null) {
                    flags.add(name);
                } else if (valued.contains(name)) {
                    if (value == null) {
                        if (i + 1 >= argv.length) throw new UsageException("option --" + name + " needs a value");
                        value = argv[++i];
                    }
                    opts.put(name, value);
                } else {
                    throw new UsageException("unknown option --" + name);
                }
            }
        }

        String req(String k) throws UsageException {
            String v = opts.get(k);
            if (v == null || v.isEmpty()) throw new UsageException("missing required option --" + k);
            return v;
        }

        String get(String k, String def) {
            return opts.getOrDefault(k, def);
        }

        long num(String k, long def, long min) throws UsageException {
            String v = opts.get(k);
            if (v == null) return def;
            try {
                long n = Long.parseLong(v.trim());
                if (n < min) throw new UsageException("--" + k + " must be at least " + min);
                return n;
            } catch (NumberFormatException e) {
                throw new UsageException("--" + k + " must be an integer: " + v);
            }
        }
    }

    static final Set<String> COMMON = Set.of("bootstrap", "topic-prefix", "max-record-bytes");

    static Set<String> with(String... more) {
        Set<String> s = new HashSet<>(COMMON);
        s.addAll(List.of(more));
        return s;
    }

    public static void main(String[] argv) {
        int rc;
        try {
            rc = run(argv);
        } catch (UsageException e) {
            System.err.println("error: " + oneLine(e.getMessage()));
            rc = 2;
        } catch (Throwable e) {
            String m = e.getMessage() == null ? e.toString() : e.getMessage();
            if (e instanceof java.util.concurrent.ExecutionException && e.getCause() != null) m = e.getCause().toString();
            System.err.println("error: " + oneLine(m));
            if (System.getenv("INTERFED_JAVA_DEBUG") != null) e.printStackTrace();
            rc = 1;
        }
        System.out.flush();
        Runtime.getRuntime().halt(rc); // no lingering Kafka threads
    }

    static String oneLine(String s) {
        return s == null ? "" : s.replace('\n', ' ').replace('\r', ' ');
    }

    static int run(String[] argv) throws Exception {
        if (argv.length == 0 || argv[0].equals("--help") || argv[0].equals("-h")) {
            if (argv.length == 0) throw new UsageException("missing command (init, join, nodes, inject, envelopes)");
            OUT.println("usage: interfed-java <init|join|nodes|inject|envelopes> [--opt value ...] (see clients/java/README.md)");
            return 0;
        }
        switch (argv[0]) {
            case "init": return init(new Args(argv, 1, with("home", "federation", "node-id", "institution", "platform",
                    "platform-version", "name", "address", "description"), Set.of()));
            case "join": return join(new Args(argv, 1, with("home", "heartbeat-ms", "expires-days", "approval-timeout-s"), Set.of()));
            case "nodes": return nodes(new Args(argv, 1, with("home", "unreachable-after-ms"), Set.of("json")));
            case "inject": return inject(new Args(argv, 1, with("home", "kind"), Set.of()));
            case "envelopes": return envelopes(new Args(argv, 1, with("out"), Set.of()));
            default: throw new UsageException("unknown command: " + argv[0]);
        }
    }

    static Mesh mesh(Args a) throws UsageException {
        String b = a.req("bootstrap");
        if (!b.contains(":")) throw new UsageException("--bootstrap must be HOST:PORT");
        long max = a.num("max-record-bytes", 1_000_000, 1024);
        if (max > Integer.MAX_VALUE - 1_000_000) throw new UsageException("--max-record-bytes too large");
        return new Mesh(b, a.get("topic-prefix", "interfed."), (int) max);
    }

    static void commonChecks(Args a) throws UsageException {
        a.num("max-record-bytes", 1_000_000, 1024);
    }

    // ---- init ----

    static int init(Args a) throws Exception {
        commonChecks(a);
        String nodeId = a.req("node-id");
        if (!NODE_ID.matcher(nodeId).matches()) throw new UsageException("--node-id must match " + NODE_ID.pattern());
        Path home = Paths.get(a.req("home")), fed = Paths.get(a.req("federation"));
        if (!Files.isDirectory(fed)) throw new UsageException("--federation is not a folder: " + fed);
        NodeHome.init(home, fed, nodeId, a.req("institution"), a.req("platform"), a.get("platform-version", ""),
                a.get("name", nodeId), a.get("address", ""), a.get("description", ""));
        OUT.println("initialised " + nodeId + " in " + home);
        return 0;
    }

    // ---- shared consumption ----

    static final List<String> FOLLOWED = List.of("schemas", "registry", "heartbeats");

    static void logOutcome(ConsumerRecord<byte[], byte[]> r, Receiver.Outcome o) {
        if (o.fate == Receiver.Fate.REFUSED) {
            System.err.println("refused " + r.topic() + "/" + r.partition() + "@" + r.offset() + " " + o.reason + ": " + oneLine(o.detail));
        }
    }

    static void catchUp(Mesh.Follower f, Mesh.Follower.Listener l, long timeoutMs) throws Exception {
        Map<TopicPartition, Long> ends = f.endOffsets();
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!f.caughtUp(ends)) {
            if (System.currentTimeMillis() > deadline) throw new IllegalStateException("timed out catching up with the topics");
            f.pollOnce(200, l);
        }
    }

    // ---- nodes ----

    static int nodes(Args a) throws Exception {
        Mesh mesh = mesh(a);
        long unreachable = a.num("unreachable-after-ms", 30_000, 0);
        NodeHome home = NodeHome.load(Paths.get(a.req("home")));
        Membership m = new Membership(home.federation());
        Receiver rx = new Receiver(m, mesh.prefix, mesh.maxRecordBytes, Mesh.MAX_EVENT_BYTES);
        Mesh.Follower f = new Mesh.Follower(mesh, rx, FOLLOWED);
        catchUp(f, Main::logOutcome, 300_000); // read-only: refusals are only logged
        f.close();
        long now = System.currentTimeMillis();
        if (a.flags.contains("json")) {
            for (Membership.Entry e : m.directory.values()) {
                ObjectNode n = JSON.createObjectNode();
                n.put("node_id", e.nodeId);
                n.put("status", e.status);
                n.put("health", Membership.health(e, now, unreachable));
                n.put("platform", e.platform);
                n.put("institution", e.institution);
                if (e.serial == null) n.putNull("serial");
                else n.put("serial", e.serial);
                OUT.println(JSON.writeValueAsString(n));
            }
        } else {
            String fmt = "%-24s %-11s %-12s %-20s %-24s %s%n";
            OUT.printf(fmt, "NODE", "STATUS", "HEALTH", "PLATFORM", "INSTITUTION", "SERIAL");
            for (Membership.Entry e : m.directory.values()) {
                OUT.printf(fmt, e.nodeId, e.status, Membership.health(e, now, unreachable),
                        e.platform + (e.platformVersion.isEmpty() ? "" : " " + e.platformVersion), e.institution, e.serial == null ? "-" : e.serial);
            }
        }
        mesh.close();
        return 0;
    }

    // ---- join ----

    static volatile boolean stop;

    static int join(Args a) throws Exception {
        Mesh mesh = mesh(a);
        long heartbeatMs = a.num("heartbeat-ms", 10_000, 1);
        long expiresDays = a.num("expires-days", 365, 1);
        long approvalTimeoutS = a.num("approval-timeout-s", 300, 1);
        NodeHome home = NodeHome.load(Paths.get(a.req("home")));
        PrivateKey key = home.key();
        byte[] pub = Ed25519.publicFromPrivate(key);
        Federation fed = home.federation();
        Membership m = new Membership(fed);
        Receiver rx = new Receiver(m, mesh.prefix, mesh.maxRecordBytes, Mesh.MAX_EVENT_BYTES);
        Mesh.Sender sender = new Mesh.Sender(mesh, home.nodeId, key, home.sequence());
        String me = home.nodeId;

        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop = true;
            try {
                done.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException ignored) {
                // exit anyway
            }
            Runtime.getRuntime().halt(0);
        }));

        mesh.ensureTopics();
        Mesh.Follower f = new Mesh.Follower(mesh, rx, FOLLOWED);
        Mesh.Follower.Listener listener = (r, o) -> {
            logOutcome(r, o);
            if (o.fate != Receiver.Fate.REFUSED) return;
            if (r.topic().equals(mesh.topic("deadletter"))) return;
            if (!m.ownCertificateUsable(me, System.currentTimeMillis())) return; // §7: only log
            try {
                sender.send(deadLetter(mesh, o, r), deadLetterSubject(r.key()));
            } catch (Exception e) {
                System.err.println("warning: could not publish a dead letter: " + e);
            }
        };
        catchUp(f, listener, 600_000);

        boolean restart = Files.exists(home.certPath());
        String contract = home.contractId();
        if (!restart) {
            Membership.Entry cur = m.directory.get(me);
            boolean pending = contract != null && cur != null && contract.equals(cur.contractId) && cur.status.equals("APPLIED")
                    && java.util.Arrays.equals(cur.csrKey, pub);
            if (!pending && !(contract != null && cur != null && contract.equals(cur.contractId) && cur.status.equals("APPROVED"))) {
                contract = UUID.randomUUID().toString();
                home.storeContract(contract);
                GenericRecord jr = Payloads.record(Schemas.JOIN_REQUESTED);
                jr.put("contract_id", contract);
                jr.put("node_id", me);
                jr.put("name", home.cfg("name"));
                jr.put("institution", home.cfg("institution"));
                jr.put("platform", home.cfg("platform"));
                jr.put("platform_version", home.cfg("platform_version"));
                jr.put("address", home.cfg("address"));
                jr.put("description", home.cfg("description"));
                jr.put("csr", ByteBuffer.wrap(Csr.build(key, pub, me, home.cfg("institution"))));
                jr.put("agreement_sha256", ByteBuffer.wrap(fed.agreementSha256));
                jr.put("expires_at", System.currentTimeMillis() + expiresDays * 86_400_000L);
                sender.send(jr, me);
            }
            OUT.println("applied " + contract);
            long deadline = System.currentTimeMillis() + approvalTimeoutS * 1000;
            while (true) {
                if (stop) {
                    done.countDown();
                    return 0;
                }
                Membership.Entry e = m.directory.get(me);
                if (e != null && contract.equals(e.contractId)) {
                    if (e.status.equals("APPROVED") && m.nodeCerts.containsKey(me)) break;
                    if (e.status.equals("REJECTED")) throw new IllegalStateException("join request " + contract + " was rejected: " + e.reason);
                    if (e.status.equals("TERMINATED")) throw new IllegalStateException("contract " + contract + " was terminated: " + e.reason);
                }
                if (System.currentTimeMillis() > deadline) throw new IllegalStateException("no approval of contract " + contract + " within " + approvalTimeoutS + " s");
                f.pollOnce(200, listener);
            }
            Cert c = m.nodeCerts.get(me);
            home.storeCertificate(c.der);
            OUT.println("approved " + c.serialHex);
        } else {
            Membership.Entry e = m.directory.get(me);
            if (e == null || !e.status.equals("APPROVED")) {
                throw new IllegalStateException("home holds a certificate, but the registry shows node " + me + " as " + (e == null ? "unknown" : e.status));
            }
        }
        Membership.Entry mine = m.directory.get(me);
        GenericRecord na = Payloads.record(Schemas.NODE_ANNOUNCED);
        na.put("node_id", me);
        na.put("contract_id", mine.contractId);
        na.put("name", home.cfg("name"));
        na.put("institution", home.cfg("institution"));
        na.put("platform", home.cfg("platform"));
        na.put("platform_version", home.cfg("platform_version"));
        na.put("address", home.cfg("address"));
        na.put("services", new org.apache.avro.generic.GenericData.Array<>(Schemas.get(Schemas.NODE_ANNOUNCED).schema.getField("services").schema(), List.of("registry")));
        sender.send(na, me);
        OUT.println("announced");

        long nextBeat = 0;
        boolean beating = false;
        while (!stop) {
            long now = System.currentTimeMillis();
            Membership.Entry e = m.directory.get(me);
            boolean ok = e != null && e.status.equals("APPROVED") && !e.revoked && m.ownCertificateUsable(me, now);
            if (now >= nextBeat) {
                if (ok) {
                    GenericRecord hb = Payloads.record(Schemas.HEARTBEAT);
                    hb.put("node_id", me);
                    hb.put("interval_ms", heartbeatMs);
                    try {
                        sender.send(hb, me);
                        if (!beating) {
                            OUT.println("beating");
                            beating = true;
                        }
                    } catch (Exception ex) {
                        System.err.println("warning: heartbeat failed: " + ex);
                    }
                } else if (beating) {
                    System.err.println("warning: contract no longer approved or certificate revoked; heartbeats stop");
                    beating = false;
                }
                nextBeat = now + heartbeatMs;
            }
            f.pollOnce(Math.max(10, Math.min(200, nextBeat - System.currentTimeMillis())), listener);
        }
        done.countDown();
        return 0;
    }

    /** §7: the key as UTF-8 with replacements, cut to 256 code points; "unkeyed" without a key. */
    static String deadLetterSubject(byte[] key) {
        if (key == null || key.length == 0) return "unkeyed";
        return Text.firstCodePoints(Text.decodeUtf8Replacing(key), 256);
    }

    static GenericRecord deadLetter(Mesh mesh, Receiver.Outcome o, ConsumerRecord<byte[], byte[]> r) throws Exception {
        byte[] v = r.value() == null ? new byte[0] : r.value();
        int half = mesh.maxRecordBytes / 2;
        GenericRecord d = Payloads.record(Schemas.DEAD_LETTER);
        String detail = Text.firstCodePoints(o.detail == null ? "" : o.detail, 2000);
        d.put("reason", o.reason);
        d.put("detail", detail);
        d.put("service", "registry");
        d.put("topic", r.topic());
        d.put("partition", r.partition());
        d.put("offset", r.offset());
        d.put("key", r.key() == null ? null : ByteBuffer.wrap(java.util.Arrays.copyOf(r.key(), Math.min(256, r.key().length))));
        d.put("original", ByteBuffer.wrap(java.util.Arrays.copyOf(v, Math.min(half, v.length))));
        d.put("original_size", (long) v.length);
        d.put("original_sha256", ByteBuffer.wrap(MessageDigest.getInstance("SHA-256").digest(v)));
        d.put("original_truncated", v.length > half);
        return d;
    }

    // ---- inject ----

    static int inject(Args a) throws Exception {
        Mesh mesh = mesh(a);
        String kind = a.req("kind");
        if (!kind.equals("bad-signature") && !kind.equals("replayed-sequence")) {
            throw new UsageException("--kind must be bad-signature or replayed-sequence");
        }
        NodeHome home = NodeHome.load(Paths.get(a.req("home")));
        if (!Files.exists(home.certPath())) throw new IllegalStateException("node " + home.nodeId + " is not approved (no node.pem)");
        PrivateKey key = home.key();
        Mesh.Sender sender = new Mesh.Sender(mesh, home.nodeId, key, home.sequence());
        sender.announce(Schemas.HEARTBEAT);
        GenericRecord hb = Payloads.record(Schemas.HEARTBEAT);
        hb.put("node_id", home.nodeId);
        hb.put("interval_ms", 10_000L);
        ArrayNode ids = JSON.createArrayNode();
        long seq;
        if (kind.equals("bad-signature")) {
            Envelope e = sender.build(hb, home.nodeId);
            e.signature[40] ^= 0x01; // one bit of S
            sender.sendEnvelope(e);
            ids.add(e.eventId);
            seq = e.sequence;
        } else {
            Envelope e1 = sender.build(hb, home.nodeId);
            sender.sendEnvelope(e1);
            Envelope e2 = new Envelope();
            e2.eventId = UUID.randomUUID().toString();
            e2.payloadType = e1.payloadType;
            e2.payloadFingerprint = e1.payloadFingerprint;
            e2.sender = e1.sender;
            e2.sequence = e1.sequence;
            e2.issuedAt = System.currentTimeMillis();
            e2.subject = e1.subject;
            e2.payload = e1.payload;
            e2.sign(key);
            sender.sendEnvelope(e2);
            ids.add(e1.eventId);
            ids.add(e2.eventId);
            seq = e1.sequence;
        }
        ObjectNode out = JSON.createObjectNode();
        out.set("event_ids", ids);
        out.put("sequence", seq);
        OUT.println(JSON.writeValueAsString(out));
        mesh.close();
        return 0;
    }

    // ---- envelopes ----

    static int envelopes(Args a) throws Exception {
        Path out = Paths.get(a.req("out"));
        JsonNode vec;
        try (InputStream in = Main.class.getClassLoader().getResourceAsStream("interfed-vectors/envelopes.json")) {
            if (in == null) throw new IllegalStateException("envelopes.json is missing from the build");
            vec = JSON.readTree(in);
        }
        PrivateKey key = Ed25519.privateFromSeed(Hex.decode(vec.get("key").get("private_seed_hex").asText()));
        String pubHex = Hex.encode(Ed25519.publicFromPrivate(key));
        ArrayNode arr = JSON.createArrayNode();
        long seq = 1;
        for (JsonNode c : vec.get("cases")) {
            Schemas.Entry s = Schemas.get(c.get("payload_type").asText());
            Set<String> hexFields = new HashSet<>();
            c.get("payload_hex_fields").forEach(x -> hexFields.add(x.asText()));
            GenericRecord p = Payloads.fromJson(s.schema, c.get("payload"), hexFields);
            JsonNode ve = c.get("envelope");
            Envelope e = new Envelope();
            e.eventId = UUID.randomUUID().toString();
            e.payloadType = s.schema.getFullName();
            e.payloadFingerprint = s.fingerprint;
            e.sender = ve.get("sender").asText();
            e.sequence = seq++;
            e.issuedAt = System.currentTimeMillis();
            e.subject = ve.get("subject").asText();
            e.correlationId = ve.get("correlation_id").isNull() ? null : ve.get("correlation_id").asText();
            e.payload = Payloads.encode(p);
            e.sign(key);
            ObjectNode n = JSON.createObjectNode();
            n.put("name", c.get("name").asText());
            n.put("payload_type", e.payloadType);
            n.put("public_key_hex", pubHex);
            n.put("encoded_hex", Hex.encode(e.encode()));
            n.put("sender", e.sender);
            n.put("sequence", e.sequence);
            n.put("subject", e.subject);
            arr.add(n);
        }
        Path parent = out.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        Files.writeString(out, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(arr) + "\n");
        return 0;
    }
}
