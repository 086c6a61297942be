package dev.interfed;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericRecord;

/** The receive pipeline of protocol.md §6 (steps 1-12), with schemas, chunks, membership and trust. */
public final class Receiver {
    public static final int WINDOW = 4096;
    public static final long REASSEMBLY_BUDGET = 268_435_456L;
    public static final long CHUNK_MAX_AGE_NANOS = 300_000_000_000L;

    public enum Fate { APPLIED, IGNORED, SKIPPED, REFUSED, RETRY }

    public static final class Outcome {
        public final Fate fate;
        public final String reason, detail, payloadType, sender;

        Outcome(Fate f, String reason, String detail, String type, String sender) {
            this.fate = f;
            this.reason = reason;
            this.detail = detail;
            this.payloadType = type;
            this.sender = sender;
        }

        @Override
        public String toString() {
            return fate + (reason != null ? " " + reason + ": " + detail : "") + (payloadType != null ? " [" + payloadType + " from " + sender + "]" : "");
        }
    }

    /** Topic of a payload type: protocol name by longest namespace (§3.1, §3.2). */
    static final String[][] NAMESPACES = {
        {"interfed.registry", "registry"},
        {"interfed.registry.Heartbeat", "heartbeats"},
        {"interfed.mesh.SchemaPublished", "schemas"},
        {"interfed.mesh.DeadLetter", "deadletter"},
        {"interfed.catalog", "catalog"},
        {"interfed.components", "components"},
        {"interfed.artifacts", "artifacts"},
        {"interfed.tasks", "tasks"},
        {"interfed.rounds", "rounds"},
        {"interfed.accel.request", "accel.requests"},
        {"interfed.accel.reply", "accel.replies"},
        {"interfed.evidence", "evidence"},
    };

    public static String topicOf(String type) {
        String best = null, topic = null;
        for (String[] ns : NAMESPACES) {
            if (type.equals(ns[0]) || type.startsWith(ns[0] + ".")) {
                if (best == null || ns[0].length() > best.length()) {
                    best = ns[0];
                    topic = ns[1];
                }
            }
        }
        return topic;
    }

    /**
     * One replay window (§6.3). Recorded sequences are forgotten in the order they were recorded,
     * as the reference does (§11 item 3): an out-of-order sequence recorded after the floor passed
     * it is still remembered, so a duplicate of it is skipped, not refused.
     */
    static final class Window {
        long high;
        final java.util.LinkedHashMap<Long, String> ids = new java.util.LinkedHashMap<>();

        /** True if new, false if a duplicate of a recorded event; REPLAYED_SEQUENCE otherwise. */
        boolean check(long sequence, String eventId) throws ProtocolException {
            String prev = ids.get(sequence);
            if (prev != null && prev.equals(eventId)) return false;
            if (prev != null) throw new ProtocolException("REPLAYED_SEQUENCE", "sequence " + sequence + " was used by event " + prev);
            if (sequence <= high - WINDOW) throw new ProtocolException("REPLAYED_SEQUENCE", "sequence " + sequence + " is below the window (high " + high + ")");
            return true;
        }

        void record(long sequence, String eventId) {
            ids.put(sequence, eventId);
            if (sequence > high) high = sequence;
            long floor = high - WINDOW;
            for (Iterator<Map.Entry<Long, String>> it = ids.entrySet().iterator(); it.hasNext(); ) {
                if (it.next().getKey() > floor) break;
                it.remove();
            }
        }
    }

    static final class Collection {
        final long opened;
        final int count;
        final long wholeSize;
        int received;
        long length;
        final List<byte[]> pieces = new ArrayList<>();

        Collection(long opened, int count, long wholeSize) {
            this.opened = opened;
            this.count = count;
            this.wholeSize = wholeSize;
        }
    }

    private static final ObjectMapper STRICT_JSON = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    public final Membership membership;
    private final String prefix;
    private final long maxRecordBytes, maxEventBytes;
    private final Map<String, Schema> writers = new HashMap<>(); // fingerprint hex -> writer schema
    private final Map<String, Window> windows = new HashMap<>();
    private final Map<String, Collection> open = new HashMap<>();
    private final Map<String, byte[]> held = new HashMap<>();
    public final Map<String, Long> counts = new TreeMap<>();

    public Receiver(Membership m, String prefix, long maxRecordBytes, long maxEventBytes) {
        this.membership = m;
        this.prefix = prefix;
        this.maxRecordBytes = maxRecordBytes;
        this.maxEventBytes = maxEventBytes;
        for (Schemas.Entry e : Schemas.builtIn().values()) writers.put(e.fingerprintHex(), e.schema);
    }

    /** Per-record context: what to record once the fate settles. */
    private static final class Ctx {
        final String topic, base;
        final int partition;
        final byte[] key;
        final boolean giveUp;
        final List<Object[]> toRecord = new ArrayList<>(); // {scope, seq, eventId}
        final List<String> release = new ArrayList<>();
        String type, sender;

        Ctx(String topic, String base, int partition, byte[] key, boolean giveUp) {
            this.topic = topic;
            this.base = base;
            this.partition = partition;
            this.key = key;
            this.giveUp = giveUp;
        }
    }

    /**
     * Handles one record. {@code giveUp}: the retry window of a retriable failure of this record is
     * over (§6.5), so a retriable failure is final.
     */
    public Outcome handle(String topic, int partition, byte[] key, byte[] value, boolean giveUp) {
        String base = topic.startsWith(prefix) ? topic.substring(prefix.length()) : topic;
        Ctx ctx = new Ctx(topic, base, partition, key, giveUp);
        byte[] v = value == null ? new byte[0] : value;
        Outcome out;
        try {
            long size = (long) v.length + (key == null ? 0 : key.length);
            if (size > maxRecordBytes) throw new ProtocolException("OVERSIZED", "record of " + size + " bytes > " + maxRecordBytes);
            Fate f = run(ctx, v, false, null);
            out = new Outcome(f, null, null, ctx.type, ctx.sender);
        } catch (ProtocolException e) {
            if (e.retriable() && !giveUp) {
                count("RETRY");
                return new Outcome(Fate.RETRY, e.reason, e.getMessage(), ctx.type, ctx.sender);
            }
            out = new Outcome(Fate.REFUSED, e.reason, e.getMessage(), ctx.type, ctx.sender);
        } catch (RuntimeException | OutOfMemoryError e) {
            out = new Outcome(Fate.REFUSED, "HANDLER_FAILED", e.toString(), ctx.type, ctx.sender);
        }
        // the fate is settled: record sequences, release held chunk values
        for (Object[] r : ctx.toRecord) record((String) r[0], (Long) r[1], (String) r[2]);
        for (String h : ctx.release) held.remove(h);
        count(out.fate == Fate.REFUSED ? "REFUSED " + out.reason : out.fate.name());
        return out;
    }

    private void count(String k) {
        counts.merge(k, 1L, Long::sum);
    }

    private Fate run(Ctx ctx, byte[] value, boolean inner, String chunkSender) throws ProtocolException {
        // 2. canonical envelope and shape
        Envelope env = Envelope.decode(value);
        ctx.type = env.payloadType;
        ctx.sender = env.sender;
        // 3. key
        if (ctx.key == null || !Arrays.equals(ctx.key, env.subject.getBytes(StandardCharsets.UTF_8))) {
            throw new ProtocolException("KEY_MISMATCH", "record key differs from subject " + env.subject);
        }
        // 4. inner event only
        if (inner && (!env.sender.equals(chunkSender) || env.payloadType.equals(Schemas.CHUNK))) {
            throw new ProtocolException("MALFORMED_CHUNK", "inner event from " + env.sender + " of type " + env.payloadType);
        }
        // 5. topic
        if (!env.payloadType.equals(Schemas.CHUNK) && !ctx.base.equals(topicOf(env.payloadType))) {
            throw new ProtocolException("WRONG_TOPIC", env.payloadType + " may not travel on " + ctx.topic);
        }
        // 6. sender and signature
        byte[] signingKey;
        String role;
        GenericRecord payload = null;
        if (env.payloadType.equals(Schemas.JOIN_REQUESTED)) {
            payload = decodePayload(env);
            Csr csr = Csr.parseAndVerify(AvroCodec.bytes(payload.get("csr")));
            if (!csr.commonNames.equals(List.of(env.sender)) || !payload.get("node_id").toString().equals(env.sender)) {
                throw new ProtocolException("UNAUTHORISED", "CSR CNs " + csr.commonNames + " / node_id are not the sender " + env.sender);
            }
            if (env.signature.length != 64 || !Ed25519.verifyStrict(csr.publicKey, env.signingBytes(), env.signature)) {
                throw new ProtocolException("BAD_SIGNATURE", "signature does not verify under the CSR key");
            }
            signingKey = csr.publicKey;
            role = "applicant";
        } else {
            List<Cert> certs = membership.certificatesFor(env.sender);
            if (certs.isEmpty()) throw new ProtocolException("UNKNOWN_SENDER", "no certificate known for " + env.sender);
            // The candidates valid at issued_at, most recently approved first; the signature picks the certificate.
            Cert c = null;
            boolean valid = false;
            for (int i = certs.size() - 1; i >= 0 && c == null; i--) {
                Cert k = certs.get(i);
                if (env.issuedAt < k.notBeforeMs - 300_000L || env.issuedAt > k.notAfterMs) continue;
                valid = true;
                if (env.signature.length == 64 && Ed25519.verifyStrict(k.publicKey, env.signingBytes(), env.signature)) c = k;
            }
            if (!valid) {
                throw new ProtocolException("INVALID_CERTIFICATE", "issued_at " + env.issuedAt + " outside the certificate's validity");
            }
            if (c == null) {
                throw new ProtocolException("BAD_SIGNATURE", "signature does not verify under " + env.sender + "'s certificate");
            }
            // Revocation last, and never on evidence (§6.2 item 4, §13.3).
            Long rev = membership.revokedFrom.get(c.serialHex);
            if (!ctx.base.equals("evidence") && rev != null && env.issuedAt >= rev) {
                throw new ProtocolException("REVOKED_SENDER", "certificate " + c.serialHex + " revoked from " + rev);
            }
            signingKey = c.publicKey;
            role = c.role;
        }
        // 7. replay window
        String scope = env.sender + "|" + Hex.encode(signingKey) + "|" + ctx.topic + "|" + ctx.partition;
        Window w = windows.get(scope);
        if (w != null && !w.check(env.sequence, env.eventId)) return Fate.SKIPPED;
        ctx.toRecord.add(new Object[] {scope, env.sequence, env.eventId});
        // 8a. unknown type
        if (!Schemas.builtIn().containsKey(env.payloadType)) return Fate.IGNORED;
        // 8b. decode
        if (payload == null) payload = decodePayload(env);
        // 9. chunks
        if (env.payloadType.equals(Schemas.CHUNK)) {
            byte[] whole = reassemble(env, payload, ctx);
            if (whole == null) return Fate.APPLIED;
            return run(ctx, whole, true, env.sender);
        }
        // 10. schemas
        if (env.payloadType.equals(Schemas.SCHEMA_PUBLISHED)) {
            byte[] fp = AvroCodec.bytes(payload.get("fingerprint"));
            if (!env.subject.equals(Hex.encode(fp))) throw new ProtocolException("KEY_MISMATCH", "subject is not the fingerprint hex");
            learn(fp, payload.get("full_name").toString(), payload.get("schema_json").toString());
        }
        // 11. registry membership and trust
        if (ctx.base.equals("registry") || ctx.base.equals("heartbeats")) {
            Object nid = payload.getSchema().getField("node_id") != null ? payload.get("node_id") : null;
            if (nid == null || !env.subject.equals(nid.toString())) throw new ProtocolException("KEY_MISMATCH", "subject is not the payload's node_id");
            membership.apply(env.payloadType, payload, env, role);
        }
        // 12. no service handlers in this client
        return Fate.APPLIED;
    }

    private GenericRecord decodePayload(Envelope env) throws ProtocolException {
        Schema writer = writers.get(env.fingerprintHex());
        if (writer == null) throw new ProtocolException("UNKNOWN_SCHEMA", "no writer schema for fingerprint " + env.fingerprintHex());
        if (!writer.getFullName().equals(env.payloadType)) {
            throw new ProtocolException("MALFORMED_PAYLOAD", "writer schema " + writer.getFullName() + " is not " + env.payloadType);
        }
        try {
            AvroCodec.decodeStrict(writer, env.payload);
        } catch (AvroCodec.DecodeException e) {
            throw new ProtocolException("MALFORMED_PAYLOAD", "payload " + e.getMessage());
        }
        Schema reader = Schemas.get(env.payloadType).schema;
        try {
            return AvroCodec.resolve(writer, reader, env.payload);
        } catch (AvroCodec.DecodeException e) {
            throw new ProtocolException("INCOMPATIBLE_SCHEMA", "payload " + e.getMessage());
        }
    }

    /** §2.5 item 1. */
    void learn(byte[] fingerprint, String fullName, String json) throws ProtocolException {
        Schema s;
        try {
            STRICT_JSON.readTree(json);
            s = Schemas.parse(json);
        } catch (Exception e) {
            throw new ProtocolException("MALFORMED_PAYLOAD", "schema_json is not a valid Avro schema: " + e.getMessage());
        }
        // Avro's Java parser gives an "error" the type RECORD; the protocol wants a record (§2.5)
        if (s.getType() != Schema.Type.RECORD || s.isError()) throw new ProtocolException("MALFORMED_PAYLOAD", "schema_json is not a record");
        String canonical = SchemaNormalization.toParsingForm(s);
        if (!Arrays.equals(Schemas.fingerprintOfCanonical(canonical), fingerprint)) {
            throw new ProtocolException("INCOMPATIBLE_SCHEMA", "fingerprint does not match schema_json");
        }
        if (!s.getFullName().equals(fullName)) throw new ProtocolException("INCOMPATIBLE_SCHEMA", "full_name does not match schema_json");
        Schema known = writers.get(Hex.encode(fingerprint));
        if (known != null) {
            if (!SchemaNormalization.toParsingForm(known).equals(canonical)) {
                throw new ProtocolException("INCOMPATIBLE_SCHEMA", "fingerprint already names another schema");
            }
            return;
        }
        writers.put(Hex.encode(fingerprint), s);
    }

    public boolean knowsSchema(String fingerprintHex) {
        return writers.containsKey(fingerprintHex);
    }

    /** §8.2 rules 1-7; returns the completed value or null. */
    private byte[] reassemble(Envelope env, GenericRecord p, Ctx ctx) throws ProtocolException {
        long now = System.nanoTime();
        for (Iterator<Collection> it = open.values().iterator(); it.hasNext(); ) {
            if (now - it.next().opened > CHUNK_MAX_AGE_NANOS) it.remove();
        }
        byte[] sha = AvroCodec.bytes(p.get("whole_sha256"));
        int index = (Integer) p.get("index"), count = (Integer) p.get("count");
        long wholeSize = (Long) p.get("whole_size");
        byte[] data = AvroCodec.bytes(p.get("data"));
        if (sha.length != 32 || index < 0 || index >= count || wholeSize <= 0 || wholeSize > maxEventBytes) {
            throw new ProtocolException("MALFORMED_CHUNK", "bad chunk header");
        }
        String k = env.sender + "|" + Hex.encode(sha);
        if (index == count - 1 && held.containsKey(k)) {
            ctx.release.add(k);
            return held.get(k);
        }
        Collection c = open.get(k);
        if (c == null) {
            if (index != 0) throw new ProtocolException("MALFORMED_CHUNK", "no open collection for a piece with index " + index);
            long h = 0;
            for (Collection o : open.values()) h += o.wholeSize;
            for (byte[] b : held.values()) h += b.length;
            if (h + wholeSize > REASSEMBLY_BUDGET) throw new ProtocolException("MALFORMED_CHUNK", "reassembly budget exceeded");
            c = new Collection(now, count, wholeSize);
            open.put(k, c);
        }
        if (count != c.count || wholeSize != c.wholeSize || index != c.received) {
            open.remove(k);
            throw new ProtocolException("MALFORMED_CHUNK", "piece out of order or inconsistent with the first piece");
        }
        c.received++;
        c.length += data.length;
        c.pieces.add(data);
        if (c.length > c.wholeSize) {
            open.remove(k);
            throw new ProtocolException("MALFORMED_CHUNK", "pieces longer than whole_size");
        }
        if (c.received < c.count) return null;
        open.remove(k);
        byte[] whole = new byte[(int) c.length];
        int pos = 0;
        for (byte[] b : c.pieces) {
            System.arraycopy(b, 0, whole, pos, b.length);
            pos += b.length;
        }
        byte[] digest;
        try {
            digest = MessageDigest.getInstance("SHA-256").digest(whole);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        if (whole.length != c.wholeSize || !Arrays.equals(digest, sha)) {
            throw new ProtocolException("MALFORMED_CHUNK", "reassembled value has the wrong size or hash");
        }
        held.put(k, whole);
        ctx.release.add(k);
        return whole;
    }

    private void record(String scope, long seq, String eventId) {
        windows.computeIfAbsent(scope, s -> new Window()).record(seq, eventId);
    }
}
