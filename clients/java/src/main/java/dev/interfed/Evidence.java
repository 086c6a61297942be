package dev.interfed;

import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.generic.GenericRecord;

/** Evidence of governance steps (protocol.md §13.1, §13.2): which events are governed, and their EvidenceRecorded. */
public final class Evidence {
    private Evidence() {}

    public static final String EVIDENCE_RECORDED = "interfed.evidence.EvidenceRecorded";

    /** §13.1: every governed payload type and the action of its evidence (tests/vectors/evidence.json checks it). */
    public static final Map<String, String> GOVERNED = new TreeMap<>(Map.ofEntries(
        Map.entry("interfed.catalog.AccessGranted", "catalog.grant"),
        Map.entry("interfed.catalog.AccessRejected", "catalog.reject"),
        Map.entry("interfed.catalog.AccessRequested", "catalog.request"),
        Map.entry("interfed.catalog.AccessTerminated", "catalog.terminate"),
        Map.entry("interfed.catalog.DatasetPublished", "catalog.publish"),
        Map.entry("interfed.catalog.DatasetRetracted", "catalog.retract"),
        Map.entry("interfed.catalog.DatasetUpdated", "catalog.update"),
        Map.entry("interfed.catalog.DatasetUsed", "catalog.use"),
        Map.entry("interfed.components.ComponentDisabled", "components.disable"),
        Map.entry("interfed.components.ComponentEnabled", "components.enable"),
        Map.entry("interfed.components.ComponentInstalled", "components.install"),
        Map.entry("interfed.components.ComponentPublished", "components.publish"),
        Map.entry("interfed.components.ComponentRetracted", "components.retract"),
        Map.entry("interfed.registry.CertificateRevoked", "registry.revoke"),
        Map.entry("interfed.registry.ContractTerminated", "registry.terminate"),
        Map.entry("interfed.registry.JoinApproved", "registry.approve"),
        Map.entry("interfed.registry.JoinRejected", "registry.reject"),
        Map.entry("interfed.registry.JoinRequested", "registry.apply"),
        Map.entry("interfed.registry.NodeAnnounced", "registry.announce"),
        Map.entry("interfed.tasks.JobAccepted", "tasks.accept"),
        Map.entry("interfed.tasks.JobProposed", "tasks.propose"),
        Map.entry("interfed.tasks.JobRejected", "tasks.reject"),
        Map.entry("interfed.tasks.JobStarted", "tasks.start"),
        Map.entry("interfed.tasks.JobStopped", "tasks.stop"),
        Map.entry("interfed.tasks.ModelReleaseApproved", "tasks.release_approve"),
        Map.entry("interfed.tasks.ModelReleaseProposed", "tasks.release_propose"),
        Map.entry("interfed.tasks.ModelReleased", "tasks.release"),
        Map.entry("interfed.tasks.PartyFinished", "tasks.finish")));

    /**
     * The action a sender must record after sending an event of this type, or null when it records
     * none: the type is not governed, or (JoinRequested) an operator records it on receipt, since an
     * applicant has no certificate to make its own evidence verifiable (§13.7).
     */
    public static String senderAction(String payloadType) {
        if (payloadType.equals(Schemas.JOIN_REQUESTED)) return null;
        return GOVERNED.get(payloadType);
    }

    /** §13.2: the EvidenceRecorded of event {@code e}, sent on protocol topic {@code topic}, taken as {@code action}. */
    public static GenericRecord of(String action, String topic, Envelope e) throws Exception {
        GenericRecord r = Payloads.record(EVIDENCE_RECORDED);
        r.put("action", action);
        r.put("subject", e.subject);
        r.put("event_id", e.eventId);
        r.put("event_topic", topic);
        r.put("event_type", e.payloadType);
        // the whole record value, before any chunking: what the auditor re-hashes from the topic
        r.put("event_sha256", ByteBuffer.wrap(MessageDigest.getInstance("SHA-256").digest(e.encode())));
        r.put("occurred_at", e.issuedAt);
        return r;
    }
}
