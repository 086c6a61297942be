package dev.interfed;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.PrivateKey;
import java.util.Arrays;
import java.util.UUID;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;

/** The signed Envelope of protocol.md §4. */
public final class Envelope {
    public static final byte[] TAG = "interfed/envelope/v1\0".getBytes(StandardCharsets.US_ASCII);

    public String eventId, payloadType, sender, subject, correlationId;
    public byte[] payloadFingerprint, payload, signature = new byte[0];
    public long sequence, issuedAt;

    public static Schema schema() {
        return Schemas.get(Schemas.ENVELOPE).schema;
    }

    GenericRecord toRecord(byte[] sig) {
        Schema s = schema();
        GenericRecord r = new GenericData.Record(s);
        r.put("event_id", eventId);
        r.put("payload_type", payloadType);
        r.put("payload_fingerprint", new GenericData.Fixed(s.getField("payload_fingerprint").schema(), payloadFingerprint));
        r.put("sender", sender);
        r.put("sequence", sequence);
        r.put("issued_at", issuedAt);
        r.put("subject", subject);
        r.put("correlation_id", correlationId);
        r.put("payload", ByteBuffer.wrap(payload));
        r.put("signature", ByteBuffer.wrap(sig));
        return r;
    }

    public byte[] signingBytes() {
        byte[] body = AvroCodec.encode(schema(), toRecord(new byte[0]));
        byte[] out = Arrays.copyOf(TAG, TAG.length + body.length);
        System.arraycopy(body, 0, out, TAG.length, body.length);
        return out;
    }

    public byte[] encode() {
        return AvroCodec.encode(schema(), toRecord(signature));
    }

    public void sign(PrivateKey key) throws Exception {
        signature = Ed25519.sign(key, signingBytes());
    }

    /** Step 2 of §6.1: decode, canonical check and shape checks; failure is MALFORMED_ENVELOPE. */
    public static Envelope decode(byte[] value) throws ProtocolException {
        GenericRecord r;
        try {
            r = AvroCodec.decodeStrict(schema(), value == null ? new byte[0] : value);
        } catch (AvroCodec.DecodeException e) {
            throw new ProtocolException("MALFORMED_ENVELOPE", "envelope " + e.getMessage());
        }
        Envelope e = new Envelope();
        e.eventId = r.get("event_id").toString();
        e.payloadType = r.get("payload_type").toString();
        e.payloadFingerprint = ((GenericData.Fixed) r.get("payload_fingerprint")).bytes().clone();
        e.sender = r.get("sender").toString();
        e.sequence = (Long) r.get("sequence");
        e.issuedAt = (Long) r.get("issued_at");
        e.subject = r.get("subject").toString();
        e.correlationId = AvroCodec.str(r.get("correlation_id"));
        e.payload = AvroCodec.bytes(r.get("payload"));
        e.signature = AvroCodec.bytes(r.get("signature"));
        if (!isCanonicalUuid(e.eventId)) throw new ProtocolException("MALFORMED_ENVELOPE", "event_id is not a canonical lower-case UUID");
        if (e.sequence < 1) throw new ProtocolException("MALFORMED_ENVELOPE", "sequence < 1");
        if (e.sender.isEmpty()) throw new ProtocolException("MALFORMED_ENVELOPE", "empty sender");
        if (e.payloadType.isEmpty()) throw new ProtocolException("MALFORMED_ENVELOPE", "empty payload_type");
        return e;
    }

    public static boolean isCanonicalUuid(String s) {
        if (s.length() != 36) return false;
        try {
            return UUID.fromString(s).toString().equals(s);
        } catch (IllegalArgumentException ex) {
            return false;
        }
    }

    public String fingerprintHex() {
        return Hex.encode(payloadFingerprint);
    }
}
