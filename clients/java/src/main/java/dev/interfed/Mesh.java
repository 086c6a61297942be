package dev.interfed;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** Kafka plumbing: topics (§3.1), the producer (§3.4) and the sender side of §2.5 and §8.1. */
public final class Mesh implements AutoCloseable {
    public static final long MAX_EVENT_BYTES = 67_108_864L;

    /** protocol name, partitions, configs (K, D30 or compact). */
    static final Object[][] TOPICS = {
        {"registry", 3, "K"}, {"heartbeats", 3, "C"}, {"schemas", 1, "C"}, {"deadletter", 3, "D30"},
        {"catalog", 3, "K"}, {"components", 3, "K"}, {"artifacts", 3, "K"}, {"tasks", 3, "K"},
        {"rounds", 6, "D30"}, {"accel.requests", 6, "D30"}, {"accel.replies", 6, "D30"}, {"evidence", 1, "K"},
    };

    public final String bootstrap, prefix;
    public final int maxRecordBytes;
    private KafkaProducer<byte[], byte[]> producer;

    public Mesh(String bootstrap, String prefix, int maxRecordBytes) {
        this.bootstrap = bootstrap;
        this.prefix = prefix;
        this.maxRecordBytes = maxRecordBytes;
    }

    public String topic(String protocolName) {
        return prefix + protocolName;
    }

    public void ensureTopics() throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60000);
        try (Admin admin = Admin.create(p)) {
            Set<String> existing = admin.listTopics().names().get();
            List<NewTopic> missing = new ArrayList<>();
            for (Object[] t : TOPICS) {
                String name = topic((String) t[0]);
                if (existing.contains(name)) continue;
                Map<String, String> cfg = new HashMap<>();
                switch ((String) t[2]) {
                    case "K":
                        cfg.put("cleanup.policy", "delete");
                        cfg.put("retention.ms", "-1");
                        cfg.put("retention.bytes", "-1");
                        break;
                    case "D30":
                        cfg.put("cleanup.policy", "delete");
                        cfg.put("retention.ms", "2592000000");
                        break;
                    default:
                        cfg.put("cleanup.policy", "compact");
                }
                cfg.put("max.message.bytes", Integer.toString(maxRecordBytes + 512));
                missing.add(new NewTopic(name, (Integer) t[1], (short) 1).configs(cfg));
            }
            for (NewTopic nt : missing) {
                try {
                    admin.createTopics(List.of(nt)).all().get();
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) throw e;
                }
            }
        }
    }

    public synchronized KafkaProducer<byte[], byte[]> producer() {
        if (producer == null) {
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.ACKS_CONFIG, "all");
            // ordered sends without relying on broker idempotence support
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
            p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 1);
            p.put(ProducerConfig.LINGER_MS_CONFIG, 0);
            p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Math.max(1_048_576, maxRecordBytes + 65_536));
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            // default partitioner: murmur2 of the key (§3.3)
            producer = new KafkaProducer<>(p);
        }
        return producer;
    }

    public RecordMetadata sendRecord(String protocolTopic, byte[] key, byte[] value) throws Exception {
        return producer().send(new ProducerRecord<>(topic(protocolTopic), key, value)).get();
    }

    public KafkaConsumer<byte[], byte[]> consumer() {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Math.max(1_048_576, maxRecordBytes + 65_536));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    /** Every partition of the given protocol topics. */
    public static List<TopicPartition> partitions(KafkaConsumer<byte[], byte[]> c, List<String> topics) {
        List<TopicPartition> out = new ArrayList<>();
        for (String t : topics) {
            List<PartitionInfo> infos = c.partitionsFor(t, Duration.ofSeconds(60));
            if (infos == null || infos.isEmpty()) throw new IllegalStateException("topic " + t + " does not exist");
            for (PartitionInfo pi : infos) out.add(new TopicPartition(t, pi.partition()));
        }
        return out;
    }

    @Override
    public void close() {
        if (producer != null) producer.close(Duration.ofSeconds(5));
    }

    /** Signs and sends events for one node: schema announcements, sequence numbers, chunking. */
    public static final class Sender {
        public final Mesh mesh;
        public final String nodeId;
        private final PrivateKey key;
        private final SequenceCounter seq;
        private final Set<String> announced = new HashSet<>();

        public Sender(Mesh mesh, String nodeId, PrivateKey key, SequenceCounter seq) {
            this.mesh = mesh;
            this.nodeId = nodeId;
            this.key = key;
            this.seq = seq;
        }

        public synchronized Envelope build(GenericRecord payload, String subject) throws Exception {
            return build(payload, subject, null);
        }

        public synchronized Envelope build(GenericRecord payload, String subject, String correlationId) throws Exception {
            Envelope e = new Envelope();
            e.eventId = UUID.randomUUID().toString();
            e.payloadType = payload.getSchema().getFullName();
            e.payloadFingerprint = Schemas.get(e.payloadType).fingerprint;
            e.sender = nodeId;
            e.sequence = seq.next();
            e.issuedAt = System.currentTimeMillis();
            e.subject = subject;
            e.correlationId = correlationId;
            e.payload = Payloads.encode(payload);
            e.sign(key);
            return e;
        }

        /** Publishes a non-core schema once (§2.5), counted only once acknowledged. */
        public synchronized void announce(String fullName) throws Exception {
            if (Schemas.isCore(fullName) || announced.contains(fullName)) return;
            Schemas.Entry s = Schemas.get(fullName);
            GenericRecord sp = Payloads.record(Schemas.SCHEMA_PUBLISHED);
            sp.put("fingerprint", ByteBuffer.wrap(s.fingerprint));
            sp.put("full_name", fullName);
            sp.put("schema_json", s.json);
            Envelope e = build(sp, s.fingerprintHex());
            byte[] v = e.encode(), k = e.subject.getBytes(StandardCharsets.UTF_8);
            if (v.length + k.length > mesh.maxRecordBytes) throw new IllegalStateException("SchemaPublished does not fit one record");
            mesh.sendRecord("schemas", k, v);
            announced.add(fullName);
        }

        /**
         * Announces the schema if needed, signs, and sends (chunked if too large); returns the envelope.
         * A governed event (§13.1) is followed, once acknowledged, by its EvidenceRecorded on
         * {@code evidence} with the same subject and correlation id.
         */
        public synchronized Envelope send(GenericRecord payload, String subject) throws Exception {
            String type = payload.getSchema().getFullName();
            announce(type);
            Envelope e = build(payload, subject);
            sendEnvelope(e);
            String action = Evidence.senderAction(type);
            if (action != null) {
                GenericRecord proof = Evidence.of(action, Receiver.topicOf(type), e);
                announce(Evidence.EVIDENCE_RECORDED);
                sendEnvelope(build(proof, e.subject, e.correlationId));
            }
            return e;
        }

        public synchronized void sendEnvelope(Envelope e) throws Exception {
            String topic = Receiver.topicOf(e.payloadType);
            byte[] v = e.encode(), k = e.subject.getBytes(StandardCharsets.UTF_8);
            if (v.length + k.length <= mesh.maxRecordBytes) {
                mesh.sendRecord(topic, k, v);
                return;
            }
            List<Envelope> pieces = chunks(e); // checks the event may be chunked before anything is sent
            announce(Schemas.CHUNK);
            for (Envelope ce : pieces) mesh.sendRecord(topic, k, ce.encode());
        }

        /** §8.1: the signed Chunk envelopes of an envelope too large for one record (the caller announces Chunk). */
        public synchronized List<Envelope> chunks(Envelope e) throws Exception {
            byte[] v = e.encode(), k = e.subject.getBytes(StandardCharsets.UTF_8);
            if (e.payloadType.equals(Schemas.JOIN_REQUESTED) || e.payloadType.equals(Schemas.SCHEMA_PUBLISHED)) {
                throw new IllegalStateException(e.payloadType + " must fit in one record");
            }
            if (v.length > MAX_EVENT_BYTES) throw new IllegalStateException("event too large to send: " + v.length + " bytes");
            byte[] sha = MessageDigest.getInstance("SHA-256").digest(v);
            // F: a real chunk envelope with this subject and correlation id and empty data
            // (it spends one sequence number: allowed, §4.3)
            Envelope pe = build(chunk(sha, 0, 1, v.length, new byte[0]), e.subject, e.correlationId);
            int f = pe.encode().length;
            int piece = mesh.maxRecordBytes - k.length - f - 32;
            int count = (v.length + piece - 1) / piece;
            List<Envelope> out = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                int from = i * piece, to = Math.min(v.length, from + piece);
                out.add(build(chunk(sha, i, count, v.length, java.util.Arrays.copyOfRange(v, from, to)), e.subject, e.correlationId));
            }
            return out;
        }

        static GenericRecord chunk(byte[] sha, int index, int count, long wholeSize, byte[] data) {
            GenericRecord c = Payloads.record(Schemas.CHUNK);
            c.put("whole_sha256", ByteBuffer.wrap(sha));
            c.put("index", index);
            c.put("count", count);
            c.put("whole_size", wholeSize);
            c.put("data", ByteBuffer.wrap(data));
            return c;
        }
    }

    /** Consumes records of one partition set with the §6.5 retry rules, feeding a Receiver. */
    public static final class Follower {
        public interface Listener {
            void outcome(ConsumerRecord<byte[], byte[]> rec, Receiver.Outcome o) throws Exception;
        }

        public static final long RETRY_EVERY_MS = 250, GIVE_UP_AFTER_MS = 5000;
        final KafkaConsumer<byte[], byte[]> consumer;
        final Receiver receiver;
        final Map<TopicPartition, Long> resumeAt = new HashMap<>();
        final Map<String, Long> firstFailure = new HashMap<>(); // "topic/partition/offset" -> monotonic ms
        public final List<TopicPartition> assigned;

        public Follower(Mesh mesh, Receiver receiver, List<String> protocolTopics) {
            this.consumer = mesh.consumer();
            this.receiver = receiver;
            List<String> names = new ArrayList<>();
            for (String t : protocolTopics) names.add(mesh.topic(t));
            this.assigned = partitions(consumer, names);
            consumer.assign(assigned);
            consumer.seekToBeginning(assigned);
        }

        public Map<TopicPartition, Long> endOffsets() {
            return consumer.endOffsets(assigned, Duration.ofSeconds(60));
        }

        public boolean caughtUp(Map<TopicPartition, Long> ends) {
            if (!resumeAt.isEmpty()) return false;
            for (TopicPartition tp : assigned) if (consumer.position(tp, Duration.ofSeconds(30)) < ends.getOrDefault(tp, 0L)) return false;
            return true;
        }

        public void pollOnce(long timeoutMs, Listener l) throws Exception {
            long now = System.nanoTime() / 1_000_000;
            List<TopicPartition> resume = new ArrayList<>();
            for (Map.Entry<TopicPartition, Long> e : resumeAt.entrySet()) if (e.getValue() <= now) resume.add(e.getKey());
            for (TopicPartition tp : resume) resumeAt.remove(tp);
            if (!resume.isEmpty()) consumer.resume(resume);
            ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(timeoutMs));
            for (TopicPartition tp : recs.partitions()) {
                for (ConsumerRecord<byte[], byte[]> r : recs.records(tp)) {
                    String id = r.topic() + "/" + r.partition() + "/" + r.offset();
                    long t = System.nanoTime() / 1_000_000;
                    Long first = firstFailure.get(id);
                    boolean giveUp = first != null && t - first >= GIVE_UP_AFTER_MS;
                    Receiver.Outcome o = receiver.handle(r.topic(), r.partition(), r.key(), r.value(), giveUp);
                    if (o.fate == Receiver.Fate.RETRY) {
                        firstFailure.putIfAbsent(id, t);
                        consumer.seek(tp, r.offset());
                        consumer.pause(List.of(tp));
                        resumeAt.put(tp, t + RETRY_EVERY_MS);
                        break; // hold back only this partition
                    }
                    firstFailure.remove(id);
                    l.outcome(r, o);
                }
            }
        }

        public void close() {
            consumer.close(Duration.ofSeconds(5));
        }
    }
}
