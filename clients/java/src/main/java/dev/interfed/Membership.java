package dev.interfed;

import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.avro.generic.GenericRecord;

/** Directory of node contracts and trust (certificates, revocations): protocol.md §9. */
public final class Membership {
    public static final class Entry {
        public String nodeId, contractId, status; // APPLIED APPROVED REJECTED TERMINATED
        public String name = "", institution = "", platform = "", platformVersion = "", address = "", description = "";
        public byte[] csr, csrKey;
        public long expiresAt, appliedAt;
        public String serial;
        public boolean revoked;
        public String revokedReason, reason;
        public long announcedAt, lastHeartbeat, intervalMs;
        public List<String> services = List.of();
    }

    public final Federation federation;
    public final Map<String, Entry> directory = new LinkedHashMap<>();
    public final Map<String, Cert> nodeCerts = new HashMap<>();     // node id -> current certificate
    public final Map<String, List<Cert>> approvedCerts = new HashMap<>(); // node id -> every one, oldest first
    public final Map<String, Long> revokedFrom = new HashMap<>();   // serial -> earliest revocation time
    public final Set<String> usedContracts = new HashSet<>();

    public Membership(Federation f) {
        this.federation = f;
    }

    /** The certificate a receiver holds for a sender (§6.2): operator's from the folder, or the current one learned. */
    public Cert certificateFor(String sender) {
        Cert c = federation.operators.get(sender);
        return c != null ? c : nodeCerts.get(sender);
    }

    /** Every certificate a sender may have signed under (§6.2): an operator's, or each one a node was approved with. */
    public List<Cert> certificatesFor(String sender) {
        Cert c = federation.operators.get(sender);
        return c != null ? List.of(c) : approvedCerts.getOrDefault(sender, List.of());
    }

    /**
     * §9.3: a node id held by any certificate of the federation folder (as the reference counts
     * them, whatever the certificate's OU) cannot be applied for.
     */
    public boolean isOperatorId(String nodeId) {
        return federation.operators.containsKey(nodeId);
    }

    void revoke(String serial, long from) {
        revokedFrom.merge(serial, from, Math::min);
    }

    static String s(GenericRecord r, String f) {
        return r.get(f).toString();
    }

    static ProtocolException fail(String reason, String detail) {
        return new ProtocolException(reason, detail);
    }

    /** Step 11: authorisation, preconditions and effects (§9.3). All checks before any change. */
    public void apply(String type, GenericRecord p, Envelope env, String speakerRole) throws ProtocolException {
        boolean operator = "operator".equals(speakerRole);
        if ((type.equals(Schemas.JOIN_APPROVED) || type.equals(Schemas.JOIN_REJECTED) || type.equals(Schemas.CERTIFICATE_REVOKED)) && !operator) {
            throw fail("UNAUTHORISED", type + " from a non-operator");
        }
        String nodeId = s(p, "node_id");
        Entry cur = directory.get(nodeId);
        switch (type) {
            case Schemas.JOIN_REQUESTED: {
                String cid = s(p, "contract_id");
                if (isOperatorId(nodeId)) throw fail("UNAUTHORISED", "join request for an operator's node id");
                if (usedContracts.contains(cid)) throw fail("INVALID_TRANSITION", "contract_id " + cid + " was used before");
                if (cur != null && !cur.status.equals("REJECTED") && !cur.status.equals("TERMINATED")) {
                    throw fail("INVALID_TRANSITION", "node " + nodeId + " has a contract in state " + cur.status);
                }
                Entry e = new Entry();
                e.nodeId = nodeId;
                e.contractId = cid;
                e.status = "APPLIED";
                e.name = s(p, "name");
                e.institution = s(p, "institution");
                e.platform = s(p, "platform");
                e.platformVersion = s(p, "platform_version");
                e.address = s(p, "address");
                e.description = s(p, "description");
                e.csr = AvroCodec.bytes(p.get("csr"));
                try {
                    e.csrKey = Csr.parseAndVerify(e.csr).publicKey;
                } catch (ProtocolException ex) {
                    throw ex; // already checked at step 6
                }
                e.expiresAt = (Long) p.get("expires_at");
                e.appliedAt = env.issuedAt;
                usedContracts.add(cid);
                directory.put(nodeId, e);
                return;
            }
            case Schemas.JOIN_APPROVED: {
                String cid = s(p, "contract_id");
                if (cur == null || !cur.contractId.equals(cid) || !cur.status.equals("APPLIED")) {
                    throw fail("INVALID_TRANSITION", "no APPLIED contract " + cid + " for " + nodeId);
                }
                Cert c = Cert.accept(AvroCodec.bytes(p.get("certificate")), federation.root);
                if (!nodeId.equals(c.commonName)) throw fail("INVALID_CERTIFICATE", "certificate CN is not " + nodeId);
                if (!"node".equals(c.role)) throw fail("INVALID_CERTIFICATE", "certificate role is not node");
                if (!java.util.Arrays.equals(c.publicKey, cur.csrKey)) throw fail("INVALID_CERTIFICATE", "certificate key is not the CSR key");
                long exp = (Long) p.get("expires_at");
                if (exp != c.notAfterMs) throw fail("INVALID_CERTIFICATE", "expires_at is not the certificate's notAfter");
                cur.status = "APPROVED";
                cur.serial = c.serialHex;
                cur.expiresAt = exp;
                nodeCerts.put(nodeId, c);
                List<Cert> all = approvedCerts.computeIfAbsent(nodeId, k -> new java.util.ArrayList<>());
                if (all.stream().noneMatch(k -> k.serialHex.equals(c.serialHex))) all.add(c);
                return;
            }
            case Schemas.JOIN_REJECTED: {
                String cid = s(p, "contract_id");
                if (cur == null || !cur.contractId.equals(cid) || !cur.status.equals("APPLIED")) {
                    throw fail("INVALID_TRANSITION", "no APPLIED contract " + cid + " for " + nodeId);
                }
                cur.status = "REJECTED";
                cur.reason = s(p, "reason");
                return;
            }
            case Schemas.NODE_ANNOUNCED: {
                String cid = s(p, "contract_id");
                if (!nodeId.equals(env.sender)) throw fail("UNAUTHORISED", "NodeAnnounced for another node");
                if (cur == null || !cur.contractId.equals(cid) || !cur.status.equals("APPROVED")) {
                    throw fail("INVALID_TRANSITION", "no APPROVED contract " + cid + " for " + nodeId);
                }
                cur.name = s(p, "name");
                cur.institution = s(p, "institution");
                cur.platform = s(p, "platform");
                cur.platformVersion = s(p, "platform_version");
                cur.address = s(p, "address");
                List<String> sv = new java.util.ArrayList<>();
                for (Object o : (List<?>) p.get("services")) sv.add(o.toString());
                cur.services = sv;
                cur.announcedAt = env.issuedAt;
                return;
            }
            case Schemas.HEARTBEAT: {
                if (!nodeId.equals(env.sender)) throw fail("UNAUTHORISED", "Heartbeat for another node");
                if (cur == null || !cur.status.equals("APPROVED")) throw fail("INVALID_TRANSITION", "no APPROVED contract for " + nodeId);
                cur.lastHeartbeat = Math.max(cur.lastHeartbeat, env.issuedAt);
                cur.intervalMs = (Long) p.get("interval_ms");
                return;
            }
            case Schemas.CONTRACT_TERMINATED: {
                String cid = s(p, "contract_id");
                if (!operator && !nodeId.equals(env.sender)) throw fail("UNAUTHORISED", "a non-operator terminated another node's contract");
                if (cur == null || !cur.contractId.equals(cid) || !(cur.status.equals("APPLIED") || cur.status.equals("APPROVED"))) {
                    throw fail("INVALID_TRANSITION", "no APPLIED or APPROVED contract " + cid + " for " + nodeId);
                }
                boolean wasApproved = cur.status.equals("APPROVED");
                cur.status = "TERMINATED";
                cur.reason = s(p, "reason");
                if (wasApproved && cur.serial != null) revoke(cur.serial, env.issuedAt);
                return;
            }
            case Schemas.CERTIFICATE_REVOKED: {
                String serial = s(p, "serial");
                if (cur == null || cur.serial == null || !cur.serial.equals(serial)) {
                    throw fail("INVALID_TRANSITION", "no directory entry of " + nodeId + " with serial " + serial);
                }
                cur.revoked = true;
                String reason = s(p, "reason");
                cur.revokedReason = reason.isEmpty() ? "revoked" : reason;
                revoke(serial, (Long) p.get("revoked_at"));
                return;
            }
            default:
                // a registry-namespace type this party has a reader for but no rule: nothing to do
        }
    }

    /** Health per §9.5. */
    public static String health(Entry e, long now, long unreachableAfter) {
        switch (e.status) {
            case "APPLIED": return "PENDING";
            case "REJECTED": return "REJECTED";
            case "TERMINATED": return "TERMINATED";
            default:
        }
        if (e.revoked) return "REVOKED";
        if (now > e.expiresAt) return "EXPIRED";
        long seen = Math.max(Math.max(e.lastHeartbeat, e.announcedAt), 0);
        if (seen == 0) return "APPROVED";
        if (now - seen <= unreachableAfter) return "HEALTHY";
        return "UNREACHABLE";
    }

    /** Whether this party's own certificate is known, unrevoked and unexpired in its own trust view (§7). */
    public boolean ownCertificateUsable(String nodeId, long now) {
        Cert c = certificateFor(nodeId);
        return c != null && usableAt(c, revokedFrom.get(c.serialHex), now);
    }

    /** §7: notBefore <= now <= notAfter, and now before any revocation of the serial (as the reference's can_sign). */
    static boolean usableAt(Cert c, Long revokedFrom, long now) {
        if (revokedFrom != null && now >= revokedFrom) return false;
        return c.notBeforeMs <= now && now <= c.notAfterMs;
    }
}
