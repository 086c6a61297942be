package dev.interfed;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.Decoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.util.Utf8;

/** Avro binary encode and strict decode (exact length, valid values, canonical encoding). */
public final class AvroCodec {
    private AvroCodec() {}

    static {
        // bound allocations made from lengths read off the wire (max_event_bytes is 64 MiB)
        setIfAbsent("org.apache.avro.limits.bytes.maxLength", "134217728");
        setIfAbsent("org.apache.avro.limits.string.maxLength", "134217728");
        setIfAbsent("org.apache.avro.limits.collectionItems.maxLength", "67108864");
    }

    private static void setIfAbsent(String k, String v) {
        if (System.getProperty(k) == null) System.setProperty(k, v);
    }

    public static final class DecodeException extends Exception {
        public DecodeException(String m) {
            super(m);
        }
    }

    public static byte[] encode(Schema schema, Object datum) {
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            BinaryEncoder enc = EncoderFactory.get().directBinaryEncoder(out, null);
            new GenericDatumWriter<Object>(schema).write(datum, enc);
            enc.flush();
            return out.toByteArray();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** No fast reader (it would bypass the strict string reading below), no logical-type conversions. */
    static final org.apache.avro.generic.GenericData PLAIN = new org.apache.avro.generic.GenericData();

    static {
        PLAIN.setFastReaderEnabled(false);
    }

    /** Reads strings strictly: invalid UTF-8 is an error; returns java.lang.String. */
    static final class StrictReader<D> extends GenericDatumReader<D> {
        StrictReader(Schema writer, Schema reader) {
            super(writer, reader, PLAIN);
        }

        @Override
        protected Object readString(Object old, Decoder in) throws IOException {
            Utf8 u = in.readString(null);
            return strictUtf8(u.getBytes(), u.getByteLength());
        }

        @Override
        protected Object readString(Object old, Schema expected, Decoder in) throws IOException {
            return readString(old, in);
        }
    }

    static String strictUtf8(byte[] b, int len) throws IOException {
        try {
            CharBuffer cb = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(b, 0, len));
            return cb.toString();
        } catch (CharacterCodingException e) {
            throw new IOException("invalid UTF-8 in string");
        }
    }

    /**
     * Decodes bytes under the writer schema alone; they must decode to exactly their length, with
     * valid values, and be the canonical encoding of what they decode to.
     */
    public static GenericRecord decodeStrict(Schema writer, byte[] data) throws DecodeException {
        Object d;
        try {
            BinaryDecoder dec = DecoderFactory.get().binaryDecoder(data, null);
            d = new StrictReader<Object>(writer, writer).read(null, dec);
            if (!dec.isEnd()) throw new DecodeException("trailing bytes after the record");
        } catch (DecodeException e) {
            throw e;
        } catch (Exception | OutOfMemoryError e) {
            throw new DecodeException("does not decode: " + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        byte[] again;
        try {
            again = encode(writer, d);
        } catch (Exception e) {
            throw new DecodeException("invalid value: " + e.getMessage());
        }
        if (!Arrays.equals(again, data)) throw new DecodeException("not the canonical encoding of its values");
        return (GenericRecord) d;
    }

    /** Resolves (already strictly checked) bytes from the writer schema into the reader schema. */
    public static GenericRecord resolve(Schema writer, Schema reader, byte[] data) throws DecodeException {
        try {
            BinaryDecoder dec = DecoderFactory.get().binaryDecoder(data, null);
            return (GenericRecord) new StrictReader<Object>(writer, reader).read(null, dec);
        } catch (Exception e) {
            throw new DecodeException("does not resolve: " + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
    }

    public static byte[] bytes(Object o) {
        ByteBuffer b = ((ByteBuffer) o).duplicate();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    public static String str(Object o) {
        return o == null ? null : o.toString();
    }
}
