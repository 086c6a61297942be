"""The auditor: replays evidence and governed topics read-only; checks signatures, heads, consistency, completeness."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any, ClassVar

from mesh import events
from mesh.bus import Record
from mesh.envelope import Envelope
from mesh.errors import BadSignatureError, HandlerFailedError, RevokedSenderError
from mesh.events import CONTRACT_TERMINATED, EVIDENCE_RECORDED, TREE_HEAD, TREE_HEAD_COSIGNED
from mesh.evidence import GOVERNED
from mesh.identity import NodeCertificate
from mesh.service import Context, Event, Service, check_handler
from mesh.topics import MEMBERSHIP_TOPICS, topic_for
from mesh.trust import SKEW_MS
from services.evidence.findings import (
    Cosignature,
    Evidence,
    Governed,
    LogHeads,
    Signed,
    Violation,
    matches,
    unsigned,
)
from services.evidence.heads import TreeHead, cosigned_head, verify_cosignature
from services.evidence.merkle import MerkleLog, verify_consistency
from services.evidence.state import EvidenceLog

#: The auditor's reason codes (docs/protocol.md §13.8): integrity violations. Records the receiving
#: pipeline refuses keep their §6.6 codes and are refused input, not violations.
MISSING_EVIDENCE = "MISSING_EVIDENCE"
DANGLING_EVIDENCE = "DANGLING_EVIDENCE"
DUPLICATE_EVIDENCE = "DUPLICATE_EVIDENCE"
EVIDENCE_MISMATCH = "EVIDENCE_MISMATCH"
UNAUTHORISED_EVIDENCE = "UNAUTHORISED_EVIDENCE"
HEAD_BEYOND_LOG = "HEAD_BEYOND_LOG"
HEAD_MISMATCH = "HEAD_MISMATCH"
SPLIT_VIEW = "SPLIT_VIEW"
INCONSISTENT_HEADS = "INCONSISTENT_HEADS"
COSIGNATURE_MISMATCH = "COSIGNATURE_MISMATCH"
TRUNCATED = "TRUNCATED"
NO_TREE_HEAD = "NO_TREE_HEAD"
REVOKED_SENDER = RevokedSenderError.reason
#: A refusal that says the auditor failed, not the input: it cannot vouch for a record it could not judge.
HANDLER_FAILED = HandlerFailedError.reason


def governed_topics() -> tuple[str, ...]:
    """The topics governed events travel on, from GOVERNED alone."""
    return tuple(sorted({t for t in map(topic_for, GOVERNED) if t is not None}))


class Auditor(Service):
    """A read-only service over the evidence topic and the governed topics; ``report()`` once caught up.

    Its verdict does not depend on the order it reads the partitions in: on the evidence topic and
    on the governed topics other than ``registry`` it accepts a record by its signature and its
    certificate's validity, and judges revocation itself once the replay is over, when it knows
    every revocation (docs/protocol.md §13.8). On ``registry``, where membership is kept, a node's
    revocation and its own events share one partition, so every reader refuses the same ones.
    """

    name: ClassVar[str] = "audit"

    def __init__(self, ctx: Context, trusted: list[TreeHead] | None = None) -> None:
        self.topics = ("evidence", *governed_topics())  # type: ignore[misc]  # per instance: GOVERNED may grow
        super().__init__(ctx, readonly=True)
        self.log_state = EvidenceLog()
        self.governed: dict[str, Governed] = {}
        self.refused_revoked: dict[str, Governed] = {}  # governed events refused as REVOKED_SENDER, by event id
        self.evidence: list[Evidence] = []
        self.logs: dict[str, LogHeads] = {}
        self.violations: list[Violation] = []
        self.refused: list[Violation] = []  # refused input: reported, counted, never a violation
        self.records = 0
        self.read_to: dict[tuple[str, int], int] = {}  # (Kafka topic, partition) -> offset after the last handled
        self.ends_at_start: dict[tuple[str, int], int | None] = {}  # where each partition ended as the replay began
        self.trusted = trusted or []
        wiring = {
            "on_governed": tuple(GOVERNED),
            "on_evidence": (EVIDENCE_RECORDED,),
            "on_tree_head": (TREE_HEAD,),
            "on_cosigned": (TREE_HEAD_COSIGNED,),
        }
        for name, payload_types in wiring.items():
            check_handler(getattr(type(self), name), payload_types)  # as Service does for what @handles declares
            self._handlers.update(dict.fromkeys(payload_types, getattr(self, name)))

    @property
    def tree(self) -> MerkleLog:
        return self.log_state.tree

    def judges_revocation(self, topic: str) -> bool:
        """Only where membership is kept: elsewhere the auditor judges revocation once it has read them all."""
        return topic in MEMBERSHIP_TOPICS or topic not in self.topics

    def violate(self, reason: str, detail: str, ev: Event[Any]) -> None:
        self.violations.append(Violation(reason, detail, ev.topic, ev.offset, ev.partition))
        self.log.warning("audit_violation", reason=reason, detail=detail, topic=ev.topic, offset=ev.offset)

    async def process(self, record: Record) -> None:
        await super().process(record)
        assert self._reader is not None
        if self._reader.is_paused(record.topic, record.partition):
            return  # it waits, its partition held back: it comes again
        spot = (record.topic, record.partition)
        if record.offset >= self.read_to.get(spot, 0):  # a parked record handed back is not read twice
            self.records += 1
            self.read_to[spot] = record.offset + 1

    async def on_start(self) -> None:
        assert self._reader is not None
        self.ends_at_start = self._reader.start_ends()

    def unread(self) -> list[dict[str, Any]]:
        """The partitions of audited topics not read to where they ended as the replay began (none, normally).

        "Caught up" already means exactly that; the auditor checks it again from what it handled itself,
        so an audit can never pass on a partial read, whatever the runtime said.
        """
        names = self.ctx.bus.names
        audited = {names(t) for t in ("schemas", "registry", *self.topics)}
        missing = []
        for (topic, partition), end in sorted(self.ends_at_start.items()):
            got = self.read_to.get((topic, partition), 0)
            if topic in audited and (end is None or got < end):
                where = {"topic": names.protocol_name(topic), "partition": partition}
                missing.append({**where, "read_to": got, "end": "unknown (no answer)" if end is None else end})
        return missing

    async def dead_letter(self, record: Record, reason: str, detail: str) -> None:
        """A record the pipeline refused on an audited topic is refused input: reported, never a violation.

        Nobody accepted it, so no honest log or state holds it: anyone who can reach the broker can
        write junk, and that falsifies nothing. What it was meant to do shows elsewhere if it mattered
        (a governed event refused leaves its evidence dangling; a leaf refused leaves its event without
        evidence and the heads not matching). A handler failure is the auditor's, not the input's:
        it stays a violation. A governed event refused as REVOKED_SENDER is kept, so that its
        evidence is reported with it rather than as dangling.
        """
        await super().dead_letter(record, reason, detail)
        topic = self.ctx.bus.names.protocol_name(record.topic)
        if topic not in self.topics:
            return
        refusal = Violation(reason, detail, topic, record.offset, record.partition)
        if reason == HANDLER_FAILED:
            self.violations.append(refusal)
            return
        self.refused.append(refusal)
        if reason == REVOKED_SENDER:
            env = Envelope.decode(record.value)  # REVOKED_SENDER: decoded and its signature verified
            if env.payload_type in GOVERNED:
                signed = Signed(env.sender, None, env.issued_at, topic, record.partition, record.offset)
                digest = hashlib.sha256(record.value).digest()
                self.refused_revoked[env.event_id] = Governed(env.event_id, env.payload_type, digest, signed)

    # -- handlers ----------------------------------------------------------------------

    async def on_governed(self, ev: Event[Any]) -> None:
        env = ev.envelope
        digest = hashlib.sha256(env.encode()).digest()
        self.governed[env.event_id] = Governed(env.event_id, env.payload_type, digest, Signed.of(ev))

    async def on_evidence(self, ev: Event[events.EvidenceRecorded]) -> None:
        index = self.log_state.append(ev.envelope.encode(), (ev.envelope.event_id, ev.payload["event_id"]))
        self.evidence.append(Evidence(index, ev.payload, Signed.of(ev)))

    async def on_tree_head(self, ev: Event[events.TreeHead]) -> None:
        head = TreeHead.from_payload(ev.payload)
        if head.log_id != ev.sender:
            self.violate(HEAD_MISMATCH, f"{ev.sender} signed a head of {head.log_id}'s log", ev)
            return
        head.verify(ev.speaker.public_key)  # BadSignatureError: refused input, as any record the pipeline refuses
        history = self.logs.setdefault(head.log_id, LogHeads())
        for earlier in history.heads:
            if earlier.tree_size == head.tree_size and earlier.root_hash != head.root_hash:
                self.violate(SPLIT_VIEW, f"{head.log_id} signed two roots for size {head.tree_size}", ev)
        self._check_against_tree(head, ev)
        if history.heads:
            self._check_consistent(history.heads[-1], head, ev)
        history.heads.append(head)
        history.signed.append(Signed.of(ev))

    async def on_cosigned(self, ev: Event[events.TreeHeadCosigned]) -> None:
        p = ev.payload
        if p["witness"] != ev.sender:
            self.violate(COSIGNATURE_MISMATCH, f"{ev.sender} countersigned as {p['witness']}", ev)
            return
        verify_cosignature(p, ev.speaker.public_key)
        head = cosigned_head(p)
        history = self.logs.get(head.log_id)
        key = (head.tree_size, head.root_hash, head.timestamp)
        if history is None or all((h.tree_size, h.root_hash, h.timestamp) != key for h in history.heads):
            self.violate(COSIGNATURE_MISMATCH, f"{ev.sender} countersigned a head {head.log_id} never signed", ev)
        elif self._check_against_tree(head, ev, COSIGNATURE_MISMATCH):
            history.cosignatures.append(Cosignature(ev.sender, head, Signed.of(ev)))

    # -- checks ----------------------------------------------------------------------------

    def _check_against_tree(self, head: TreeHead, ev: Event[Any], reason: str = HEAD_MISMATCH) -> bool:
        """Every honest log is the evidence topic's records in order: the replayed tree must have this root."""
        if head.tree_size > self.tree.size:
            detail = f"{head.log_id}'s head of size {head.tree_size}, but the topic holds {self.tree.size} leaves"
            self.violate(HEAD_BEYOND_LOG, detail + " so far", ev)
            return False
        if self.tree.root(head.tree_size) != head.root_hash:
            self.violate(reason, f"{head.log_id}'s root at size {head.tree_size} is not the replayed log's", ev)
            return False
        return True

    def _check_consistent(self, old: TreeHead, new: TreeHead, ev: Event[Any]) -> None:
        """RFC 9162 consistency of a log's successive heads, from a proof the replayed tree gives."""
        if new.tree_size < old.tree_size:
            self.violate(INCONSISTENT_HEADS, f"{new.log_id}'s head shrank from {old.tree_size} to {new.tree_size}", ev)
            return
        if new.tree_size > self.tree.size:
            return  # already HEAD_BEYOND_LOG
        proof = self.tree.consistency_proof(old.tree_size, new.tree_size)
        if not verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof):
            self.violate(
                INCONSISTENT_HEADS,
                f"{new.log_id}'s head at {new.tree_size} does not extend its head at {old.tree_size}",
                ev,
            )

    # -- revocation, judged once everything is read -------------------------------------------

    def _certificate(self, signed: Signed) -> NodeCertificate | None:
        """The certificate a record is judged under, as §6.2 picks it with every approval read: the most recently
        approved of the sender's certificates valid at its issued_at with the key it verified under. (While
        reading, a later approval under the same key may not have been read yet.)"""
        if signed.key is None:
            return None
        candidates = [
            c
            for c in self.trust.certificates(signed.sender)
            if c.public_key == signed.key and c.not_before - SKEW_MS <= signed.issued_at <= c.not_after + SKEW_MS
        ]
        return candidates[-1] if candidates else None

    def _cut(self, signed: Signed) -> int | None:
        """When the certificate ``signed`` is judged under was revoked from, if it was (None: never)."""
        cert = self._certificate(signed)
        return self.trust.revoked_from(cert.serial) if cert is not None else None

    def _late(self, signed: Signed, *times: int) -> bool:
        """Whether it was signed from its signer's cut on (the envelope's issued_at, or any of ``times``)."""
        cut = self._cut(signed)
        return cut is not None and max((signed.issued_at, *times)) >= cut

    def _event_late(self, g: Governed) -> bool:
        """A governed event the pipeline did not judge for revocation (not on registry) signed after the cut."""
        return g.signed.topic not in MEMBERSHIP_TOPICS and self._late(g.signed)

    def _counts(self, e: Evidence) -> bool:
        """Whether a leaf counts as evidence: recorded while its recorder could sign, or the recorder's own
        record of its own ContractTerminated, which by design comes after the cut that termination makes."""
        if not self._late(e.signed):
            return True
        target = self.governed.get(e.payload["event_id"])
        return target is not None and target.payload_type == CONTRACT_TERMINATED and target.signed.sender == e.recorder

    def _late_head(self, head: TreeHead, signed: Signed) -> bool:
        return self._late(signed, head.timestamp)

    def _after_revocation(self) -> list[dict[str, Any]]:
        """Everything accepted that its signer signed from its own cut on: reported, never a violation."""
        found: list[dict[str, Any]] = []

        def add(kind: str, signed: Signed, detail: str) -> None:
            cut = self._cut(signed)
            entry = {"kind": kind, "sender": signed.sender, "issued_at": signed.issued_at, "cut": cut}
            found.append({**entry, **signed.where(), "detail": detail})

        for g in self.governed.values():
            if self._event_late(g):
                add("event", g.signed, f"{g.payload_type} {g.event_id}")
        for e in self.evidence:
            what = f"evidence leaf {e.index} ({e.payload['action']} of {e.payload['event_id']})"
            if not self._counts(e):
                add("evidence", e.signed, what)
            elif e.payload["event_id"] not in self.governed and e.payload["event_id"] in self.refused_revoked:
                add("evidence_of_refused", e.signed, f"{what}, an event refused as {REVOKED_SENDER}")
        for log_id, h in self.logs.items():
            for head, signed in zip(h.heads, h.signed, strict=True):
                if self._late_head(head, signed):
                    by = sorted({c.witness for c in h.cosignatures if c.head == unsigned(head)})
                    add("tree_head", signed, f"{log_id}'s head of {head.tree_size}, countersigned by {by or 'nobody'}")
            for c in h.cosignatures:
                if self._late(c.signed):
                    detail = f"{c.witness}'s countersignature of {log_id}'s head of {c.head.tree_size}"
                    add("cosignature", c.signed, detail)
        return sorted(found, key=lambda f: (f["topic"], f["partition"], f["offset"]))

    # -- completeness ---------------------------------------------------------------------------

    def _check_completeness(self) -> list[Violation]:
        found: list[Violation] = []

        def violate(reason: str, detail: str, signed: Signed) -> None:
            found.append(Violation(reason, detail, signed.topic, signed.offset, signed.partition))

        operators = self.ctx.federation.operator_ids
        claims: dict[str, list[Evidence]] = {}
        late_claims: dict[str, list[Evidence]] = {}
        recorded: set[tuple[str, str]] = set()
        for e in self.evidence:
            p = e.payload
            where = f"evidence leaf {e.index} ({p['action']} of {p['event_id']})"
            if not self._counts(e):
                late_claims.setdefault(p["event_id"], []).append(e)
                continue
            claims.setdefault(p["event_id"], []).append(e)
            if (p["event_id"], e.recorder) in recorded:
                violate(DUPLICATE_EVIDENCE, f"{where}: {e.recorder} already recorded this event", e.signed)
                continue
            recorded.add((p["event_id"], e.recorder))
            target = self.governed.get(p["event_id"]) or self.refused_revoked.get(p["event_id"])
            if target is None:
                violate(DANGLING_EVIDENCE, f"{where} points at no governed event", e.signed)
            elif not matches(p, target):
                violate(EVIDENCE_MISMATCH, f"{where} does not match the event it names", e.signed)
            elif e.recorder != target.signed.sender and e.recorder not in operators:
                detail = f"{where} recorded by {e.recorder}, not by {target.signed.sender}"
                violate(UNAUTHORISED_EVIDENCE, detail, e.signed)
        for g in self.governed.values():
            if g.event_id in claims or self._event_late(g):
                continue
            late = late_claims.get(g.event_id, ())
            if any(e.recorder == g.signed.sender and matches(e.payload, g) for e in late):
                continue  # its sender recorded it, from its cut on: reported with that leaf
            detail = f"{g.payload_type} {g.event_id} by {g.signed.sender} has no evidence record"
            violate(MISSING_EVIDENCE, detail, g.signed)
        return found

    def _check_trusted(self) -> list[Violation]:
        """Each trusted head must verify under one of its keeper's certificates and be the log's root at its size."""
        found: list[Violation] = []
        for head in self.trusted:
            certs = self.trust.certificates(head.log_id)
            if not certs:
                found.append(Violation(HEAD_MISMATCH, f"trusted head names unknown log {head.log_id}"))
                continue
            problem = ""
            for cert in certs:
                try:
                    head.verify(cert.public_key)
                except BadSignatureError as exc:
                    problem = str(exc)
                    continue
                problem = ""
                break
            if problem:
                found.append(Violation(HEAD_MISMATCH, f"trusted head of {head.log_id}: {problem}"))
            elif head.tree_size > self.tree.size:
                detail = f"{head.log_id}'s trusted head of size {head.tree_size}, but the topic holds {self.tree.size}"
                found.append(Violation(TRUNCATED, detail))
            elif self.tree.root(head.tree_size) != head.root_hash:
                detail = f"{head.log_id}'s trusted root at size {head.tree_size} is not the replayed log's"
                found.append(Violation(HEAD_MISMATCH, detail))
        return found

    def _check_signed_heads(self) -> list[Violation]:
        """A non-empty log needs a head signed while its keeper could sign."""
        if not self.tree.size or any(self._good_heads(h) for h in self.logs.values()):
            return []
        return [Violation(NO_TREE_HEAD, f"{self.tree.size} leaves and no signed tree head")]

    def _good_heads(self, h: LogHeads) -> list[TreeHead]:
        """A log's heads signed while its keeper could sign, in topic order."""
        return [head for head, signed in zip(h.heads, h.signed, strict=True) if not self._late_head(head, signed)]

    # -- the verdict --------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Run the end-of-replay checks and return the JSON report (each call anew: the checks change nothing).

        Lists are in topic, partition and offset order, so the report does not depend on the order
        the partitions were read in. A replay that did not read every partition to where it ended
        when the replay began is incomplete: it never passes.
        """
        end = self._check_completeness() + self._check_trusted() + self._check_signed_heads()
        violations = sorted(self.violations + end, key=Violation.sort_key)
        refused = sorted(self.refused, key=Violation.sort_key)
        counted = [e for e in self.evidence if self._counts(e)]
        by_topic: dict[str, Counter[str]] = {}
        for r in refused:
            by_topic.setdefault(r.topic, Counter())[r.reason] += 1
        unread = self.unread() if self.caught_up.is_set() else [{"topic": "*", "detail": "the replay never caught up"}]
        return {
            "passed": not violations and not unread,
            "complete": not unread,
            "unread": unread,
            "records_read": self.records,
            "tree_size": self.tree.size,
            "root_hash": self.tree.root().hex(),
            "governed_events": len(self.governed),
            "evidence_records": len(counted),
            "by_action": dict(sorted(Counter(e.payload["action"] for e in counted).items())),
            "logs": {log_id: self._log_report(h) for log_id, h in sorted(self.logs.items())},
            "violations_by_reason": dict(sorted(Counter(v.reason for v in violations).items())),
            "violations": [v.to_json() for v in violations],
            "refused_input": {
                "count": len(refused),
                "by_reason": dict(sorted(Counter(r.reason for r in refused).items())),
                "by_topic": {t: dict(sorted(c.items())) for t, c in sorted(by_topic.items())},
                "records": [r.to_json() for r in refused],
            },
            "after_revocation": self._after_revocation(),
        }

    def _log_report(self, h: LogHeads) -> dict[str, Any]:
        """A log's heads: its latest signed while its keeper could sign, and who countersigned that one."""
        good = self._good_heads(h)
        latest = good[-1] if good else None
        cosigners = {
            c.witness
            for c in h.cosignatures
            if latest is not None and c.head == unsigned(latest) and not self._late(c.signed)
        }
        return {
            "heads": len(good),
            "late_heads": len(h.heads) - len(good),
            "latest": latest.to_json() if latest else None,
            "cosigned_by": sorted(cosigners),
        }

    def final_head(self) -> TreeHead | None:
        """The largest head signed while its keeper could sign that matches the replayed log (the latest
        if several have that size)."""
        best: TreeHead | None = None
        for h in self.logs.values():
            for head in self._good_heads(h):
                good = head.tree_size <= self.tree.size and self.tree.root(head.tree_size) == head.root_hash
                if good and (best is None or (head.tree_size, head.timestamp) >= (best.tree_size, best.timestamp)):
                    best = head
        return best

    def signer_key(self, head: TreeHead) -> bytes | None:
        """The public key of the certificate ``head``'s envelope verified under."""
        for h in self.logs.values():
            for known, signed in zip(h.heads, h.signed, strict=True):
                if known == head:
                    return signed.key
        return None
