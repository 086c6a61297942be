package dev.interfed;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;

/** Builds payload records from the vectors' JSON form (bytes fields as hex). */
public final class Payloads {
    private Payloads() {}

    public static GenericRecord fromJson(Schema schema, JsonNode json, Set<String> hexFields) {
        GenericRecord r = new GenericData.Record(schema);
        for (Schema.Field f : schema.getFields()) {
            JsonNode v = json.get(f.name());
            if (v == null) {
                r.put(f.name(), GenericData.get().getDefaultValue(f));
                continue;
            }
            r.put(f.name(), value(f.schema(), v, hexFields.contains(f.name())));
        }
        return r;
    }

    static Object value(Schema s, JsonNode v, boolean hex) {
        switch (s.getType()) {
            case STRING: return v.asText();
            case LONG: return v.asLong();
            case INT: return v.asInt();
            case BOOLEAN: return v.asBoolean();
            case NULL: return null;
            case BYTES: return ByteBuffer.wrap(hex ? Hex.decode(v.asText()) : v.asText().getBytes(java.nio.charset.StandardCharsets.UTF_8));
            case ARRAY: {
                List<Object> out = new ArrayList<>();
                for (JsonNode x : v) out.add(value(s.getElementType(), x, hex));
                return new GenericData.Array<>(s, out);
            }
            case UNION: {
                if (v.isNull()) return null;
                for (Schema b : s.getTypes()) if (b.getType() != Schema.Type.NULL) return value(b, v, hex);
                return null;
            }
            default: throw new IllegalArgumentException("unsupported type in vector payload: " + s);
        }
    }

    public static GenericRecord record(String fullName) {
        return new GenericData.Record(Schemas.get(fullName).schema);
    }

    public static byte[] encode(GenericRecord r) {
        return AvroCodec.encode(r.getSchema(), r);
    }
}
