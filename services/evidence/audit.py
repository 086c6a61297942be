"""The auditor: replays evidence and governed topics read-only; checks signatures, heads, consistency, completeness."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mesh.bus import Record
from mesh.envelope import Envelope
from mesh.errors import BadSignatureError, MeshError, RevokedSenderError
from mesh.evidence import EVIDENCE_RECORDED, GOVERNED
from mesh.service import Context, Event, Service
from mesh.signing import Verifier
from mesh.topics import topic_for
from services.evidence.heads import TREE_HEAD, TREE_HEAD_COSIGNED, TreeHead, cosigned_head, verify_cosignature
from services.evidence.merkle import MerkleLog, verify_consistency
from services.evidence.state import EvidenceLog

#: The auditor's reason codes (docs/protocol.md §13.7); refusals by the receiving pipeline keep theirs (§6.6).
MISSING_EVIDENCE = "MISSING_EVIDENCE"
DANGLING_EVIDENCE = "DANGLING_EVIDENCE"
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


def governed_topics() -> tuple[str, ...]:
    """The topics governed events travel on, from GOVERNED alone."""
    return tuple(sorted({t for t in map(topic_for, GOVERNED) if t is not None}))


@dataclass(frozen=True, slots=True)
class Violation:
    reason: str
    detail: str
    topic: str = ""
    offset: int = -1

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, "topic": self.topic, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Governed:
    """A governance event as the auditor met it."""

    event_id: str
    topic: str
    payload_type: str
    sender: str
    sha256: bytes


@dataclass(frozen=True, slots=True)
class Evidence:
    """An evidence record: who recorded it (its envelope's sender) and what it claims."""

    index: int
    recorder: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RefusedHead:
    """A head its keeper really signed (both signatures checked) that the pipeline refused as REVOKED_SENDER."""

    head: TreeHead
    detail: str
    offset: int


@dataclass
class LogHeads:
    """Every head one log published, in topic order, and who countersigned which."""

    heads: list[TreeHead] = field(default_factory=list)
    cosigners: dict[tuple[int, bytes], set[str]] = field(default_factory=dict)


class Auditor(Service):
    """A read-only service over the evidence topic and the governed topics; ``report()`` once caught up."""

    name: ClassVar[str] = "audit"

    def __init__(self, ctx: Context, trusted: list[TreeHead] | None = None) -> None:
        self.topics = ("evidence", *governed_topics())  # type: ignore[misc]  # per instance: GOVERNED may grow
        super().__init__(ctx, readonly=True)
        self.log_state = EvidenceLog()
        self.governed: dict[str, Governed] = {}
        self.evidence: list[Evidence] = []
        self.logs: dict[str, LogHeads] = {}
        self.violations: list[Violation] = []
        self.after_revocation: list[Violation] = []  # refused alike by everyone; reported, not a violation
        self.refused_heads: dict[tuple[str, int, bytes], RefusedHead] = {}  # (log, size, root): the first refused
        self.cosigned_refused: list[dict[str, Any]] = []  # countersignatures of refused heads; reported likewise
        self.records = 0
        self.read_to: dict[tuple[str, int], int] = {}  # (Kafka topic, partition) -> offset after the last handled
        self.ends_at_start: dict[tuple[str, int], int | None] = {}  # where each partition ended as the replay began
        self.trusted = trusted or []
        for payload_type in GOVERNED:
            self._handlers[payload_type] = self.on_governed
        self._handlers[EVIDENCE_RECORDED] = self.on_evidence
        self._handlers[TREE_HEAD] = self.on_tree_head
        self._handlers[TREE_HEAD_COSIGNED] = self.on_cosigned

    @property
    def tree(self) -> MerkleLog:
        return self.log_state.tree

    def violate(self, reason: str, detail: str, ev: Event | None = None) -> None:
        topic, offset = (ev.topic, ev.offset) if ev is not None else ("", -1)
        self.violations.append(Violation(reason, detail, topic, offset))
        self.log.warning("audit_violation", reason=reason, detail=detail, topic=topic, offset=offset)

    async def process(self, record: Record) -> None:
        await super().process(record)
        assert self._reader is not None
        if not self._reader.is_paused(record.topic, record.partition):  # else it waits, and comes again
            self.records += 1
            self.read_to[(record.topic, record.partition)] = record.offset + 1

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
        """A record the pipeline refused: on an audited topic that is a violation under the pipeline's reason.

        Except REVOKED_SENDER: a party that signs before it has read its own revocation or termination is
        refused by every receiver alike, so every honest log leaves it out and nothing was falsified.
        A tree head refused so is kept (once its signatures check), so that a countersignature of it
        by a party that read it before the revocation is known for what it is (``on_cosigned``).
        """
        await super().dead_letter(record, reason, detail)
        topic = self.ctx.bus.names.protocol_name(record.topic)
        if topic not in self.topics:
            return
        if reason == REVOKED_SENDER:
            self.after_revocation.append(Violation(reason, detail, topic, record.offset))
            if topic == "evidence":
                self._keep_refused_head(record, detail)
        else:
            self.violations.append(Violation(reason, detail, topic, record.offset))

    def _keep_refused_head(self, record: Record, detail: str) -> None:
        """Remember a refused TreeHead by (log, size, root), if its keeper's certified key signed it.

        The pipeline refuses a revoked sender before it checks the signature (docs/protocol.md §6.1), so
        both the envelope's and the head's signatures are checked here: a head nobody signed is not kept,
        and a countersignature of it stays COSIGNATURE_MISMATCH.
        """
        env = Envelope.decode(record.value)  # the pipeline decoded it before refusing it
        if env.payload_type != TREE_HEAD:
            return
        cert = self.trust.certificate(env.sender)  # known: REVOKED_SENDER names a certificate
        try:
            if cert is None:
                raise BadSignatureError(f"no certificate known for {env.sender!r}")
            env.verify(Verifier(cert.public_key))
            head = TreeHead.from_payload(self.schemas.decode(env.payload_type, env.payload_fingerprint, env.payload))
            if head.log_id != env.sender:
                raise BadSignatureError(f"{env.sender} signed a head of {head.log_id}'s log")
            head.verify(cert.public_key)
        except MeshError as exc:
            self.log.warning("refused_head_not_kept", sender=env.sender, offset=record.offset, error=str(exc))
            return
        refused = RefusedHead(head, detail, record.offset)
        self.refused_heads.setdefault((head.log_id, head.tree_size, head.root_hash), refused)

    # -- handlers ----------------------------------------------------------------------

    async def on_governed(self, ev: Event) -> None:
        env = ev.envelope
        digest = hashlib.sha256(env.encode()).digest()
        self.governed[env.event_id] = Governed(env.event_id, ev.topic, env.payload_type, env.sender, digest)

    async def on_evidence(self, ev: Event) -> None:
        index = self.log_state.append(ev.envelope.encode(), (ev.envelope.event_id, ev.payload["event_id"]))
        self.evidence.append(Evidence(index, ev.sender, ev.payload))

    async def on_tree_head(self, ev: Event) -> None:
        head = TreeHead.from_payload(ev.payload)
        if head.log_id != ev.sender:
            self.violate(HEAD_MISMATCH, f"{ev.sender} signed a head of {head.log_id}'s log", ev)
            return
        head.verify(ev.speaker.public_key)  # BadSignatureError: refused, and so a violation, by the pipeline
        history = self.logs.setdefault(head.log_id, LogHeads())
        for earlier in history.heads:
            if earlier.tree_size == head.tree_size and earlier.root_hash != head.root_hash:
                self.violate(SPLIT_VIEW, f"{head.log_id} signed two roots for size {head.tree_size}", ev)
        self._check_against_tree(head, ev)
        if history.heads:
            self._check_consistent(history.heads[-1], head, ev)
        history.heads.append(head)

    async def on_cosigned(self, ev: Event) -> None:
        p = ev.payload
        if p["witness"] != ev.sender:
            self.violate(COSIGNATURE_MISMATCH, f"{ev.sender} countersigned as {p['witness']}", ev)
            return
        verify_cosignature(p, ev.speaker.public_key)
        head = cosigned_head(p)
        key = (head.tree_size, head.root_hash)
        history = self.logs.get(head.log_id)
        if history is not None and any((h.tree_size, h.root_hash) == key for h in history.heads):
            if self._check_against_tree(head, ev, COSIGNATURE_MISMATCH):
                history.cosigners.setdefault(key, set()).add(ev.sender)
        elif (refused := self.refused_heads.get((head.log_id, head.tree_size, head.root_hash))) is not None:
            # The keeper signed it after its revocation or termination, and the witness read it before
            # reading that (receivers apply membership in their own read order, docs/protocol.md §11):
            # reported, not a violation, as long as the witness's log really had that root.
            if self._check_against_tree(head, ev, COSIGNATURE_MISMATCH):
                self.cosigned_refused.append(
                    {
                        "witness": ev.sender,
                        "log_id": head.log_id,
                        "tree_size": head.tree_size,
                        "root_hash": head.root_hash.hex(),
                        "reason": REVOKED_SENDER,
                        "detail": refused.detail,
                        "head_offset": refused.offset,
                        "topic": ev.topic,
                        "offset": ev.offset,
                    }
                )
        else:
            self.violate(COSIGNATURE_MISMATCH, f"{ev.sender} countersigned a head {head.log_id} never signed", ev)

    # -- checks ----------------------------------------------------------------------------

    def _check_against_tree(self, head: TreeHead, ev: Event | None, reason: str = HEAD_MISMATCH) -> bool:
        """Every honest log is the evidence topic's records in order: the replayed tree must have this root."""
        if head.tree_size > self.tree.size:
            self.violate(
                HEAD_BEYOND_LOG if ev is not None else TRUNCATED,
                f"{head.log_id}'s head of size {head.tree_size}, but the topic holds {self.tree.size} leaves so far",
                ev,
            )
            return False
        if self.tree.root(head.tree_size) != head.root_hash:
            self.violate(reason, f"{head.log_id}'s root at size {head.tree_size} is not the replayed log's", ev)
            return False
        return True

    def _check_consistent(self, old: TreeHead, new: TreeHead, ev: Event) -> None:
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

    def _check_completeness(self) -> None:
        operators = self.ctx.federation.operator_ids
        claims: dict[str, list[Evidence]] = {}
        for e in self.evidence:
            claims.setdefault(e.payload["event_id"], []).append(e)
            target = self.governed.get(e.payload["event_id"])
            p = e.payload
            where = f"evidence leaf {e.index} ({p['action']} of {p['event_id']})"
            if target is None:
                self.violations.append(Violation(DANGLING_EVIDENCE, f"{where} points at no governed event"))
            elif (p["event_sha256"], p["event_type"], p["event_topic"], p["action"]) != (
                target.sha256,
                target.payload_type,
                target.topic,
                GOVERNED[target.payload_type],
            ):
                self.violations.append(Violation(EVIDENCE_MISMATCH, f"{where} does not match the event it names"))
            elif e.recorder != target.sender and e.recorder not in operators:
                self.violations.append(
                    Violation(UNAUTHORISED_EVIDENCE, f"{where} recorded by {e.recorder}, not by {target.sender}")
                )
        for g in self.governed.values():
            if g.event_id not in claims:
                self.violations.append(
                    Violation(MISSING_EVIDENCE, f"{g.payload_type} {g.event_id} by {g.sender} has no evidence record")
                )

    def _check_trusted(self) -> None:
        for head in self.trusted:
            cert = self.trust.certificate(head.log_id)
            if cert is None:
                self.violations.append(Violation(HEAD_MISMATCH, f"trusted head names unknown log {head.log_id}"))
                continue
            try:
                head.verify(cert.public_key)
            except BadSignatureError as exc:
                self.violations.append(Violation(HEAD_MISMATCH, f"trusted head of {head.log_id}: {exc}"))
                continue
            self._check_against_tree(head, None)

    # -- the verdict --------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Run the end-of-replay checks (once) and return the JSON report."""
        if not getattr(self, "_finished", False):
            self._finished = True
            self._check_completeness()
            self._check_trusted()
            if self.tree.size and not any(h.heads for h in self.logs.values()):
                self.violations.append(Violation(NO_TREE_HEAD, f"{self.tree.size} leaves and no signed tree head"))
        reasons = Counter(v.reason for v in self.violations)
        unread = self.unread() if self.caught_up.is_set() else [{"topic": "*", "detail": "the replay never caught up"}]
        return {
            "passed": not self.violations and not unread,
            "complete": not unread,
            "unread": unread,
            "records_read": self.records,
            "tree_size": self.tree.size,
            "root_hash": self.tree.root().hex(),
            "governed_events": len(self.governed),
            "evidence_records": len(self.evidence),
            "by_action": dict(sorted(Counter(e.payload["action"] for e in self.evidence).items())),
            "logs": {
                log_id: {
                    "heads": len(h.heads),
                    "latest": h.heads[-1].to_json() if h.heads else None,
                    "cosigned_by": sorted(h.cosigners.get((h.heads[-1].tree_size, h.heads[-1].root_hash), set()))
                    if h.heads
                    else [],
                }
                for log_id, h in sorted(self.logs.items())
            },
            "violations_by_reason": dict(sorted(reasons.items())),
            "violations": [v.to_json() for v in self.violations],
            "refused_after_revocation": [v.to_json() for v in self.after_revocation],
            "cosigned_refused_heads": list(self.cosigned_refused),
        }

    def final_head(self) -> TreeHead | None:
        """The largest signed head that matches the replayed log (the latest if several have that size)."""
        best: TreeHead | None = None
        for h in self.logs.values():
            for head in h.heads:
                good = head.tree_size <= self.tree.size and self.tree.root(head.tree_size) == head.root_hash
                if good and (best is None or (head.tree_size, head.timestamp) >= (best.tree_size, best.timestamp)):
                    best = head
        return best
