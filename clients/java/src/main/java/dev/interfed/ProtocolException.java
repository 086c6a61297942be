package dev.interfed;

/** A refusal of a record with a reason code of protocol.md §6.6. */
public class ProtocolException extends Exception {
    public final String reason;

    public ProtocolException(String reason, String detail) {
        super(detail);
        this.reason = reason;
    }

    public boolean retriable() {
        return reason.equals("UNKNOWN_SCHEMA") || reason.equals("UNKNOWN_SENDER");
    }

    @Override
    public String toString() {
        return reason + ": " + getMessage();
    }
}
