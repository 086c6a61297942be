"""The evidence service: witnesses evidence into its Merkle log, signs heads, countersigns, spots split views."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, ClassVar

from aiokafka.errors import KafkaError

from mesh import events
from mesh.clock import now_ms
from mesh.envelope import Envelope
from mesh.errors import UnauthorisedError
from mesh.events import (
    CERTIFICATE_REVOKED,
    CONTRACT_TERMINATED,
    EVIDENCE_RECORDED,
    JOIN_REQUESTED,
    TREE_HEAD,
    TREE_HEAD_COSIGNED,
)
from mesh.evidence import GOVERNED, evidence_of
from mesh.identity import NodeCertificate
from mesh.service import Context, Event, Service, handles
from services.evidence.errors import HistoryRewrittenError, SplitViewError
from services.evidence.heads import TreeHead, cosign, cosigned_head, verify_cosignature
from services.evidence.state import EvidenceLog

LOG_FILE = "evidence/log.bin"


class EvidenceService(Service):
    """One party's witness: every EvidenceRecorded it accepts becomes the next leaf of its log.

    Because the evidence topic has one partition, and a record on it is judged by its signature
    and its certificate's validity only (not by revocations, which each party reads on
    ``registry`` in its own order), every honest party accepts the same records in the same
    order, so their logs are identical leaf for leaf and a head of size n by any of them must
    have the root this party's log has at n: anything else is a split view. A head always comes
    after the leaves it covers on that partition, so a witness has them by then.

    An operator's evidence service also records receipt of join requests (``registry.apply``):
    the applicant holds no certificate when it applies, so no one could verify its own record.
    """

    name: ClassVar[str] = "evidence"
    topics: ClassVar[tuple[str, ...]] = ("evidence",)

    def __init__(
        self,
        ctx: Context,
        *,
        readonly: bool = False,
        head_interval: float = 5.0,
        persist: bool = True,
        keep: bool = True,
    ) -> None:
        """``persist``: keep the log in the node home; ``keep``: once caught up, sign heads, countersign and
        record receipts on its own (off for a one-off session that only answers one request)."""
        super().__init__(ctx, readonly=readonly)
        self.keeps = keep and not readonly
        self.me = ctx.config.node_id
        self.head_interval = head_interval
        self.log_state = EvidenceLog(ctx.home.state_path / LOG_FILE if persist and not readonly else None)
        self._witnessed = 0  # position in this run's replay of the evidence topic
        self.heads: dict[tuple[str, int], bytes] = {}  # (log, size) -> root, from every head and cosignature seen
        self.latest_head: dict[str, TreeHead] = {}
        # Heads of other logs to countersign, with their envelopes' issued_at and the serial of the
        # certificate they verified under (what a revocation cuts by).
        self._to_cosign: dict[tuple[str, int, bytes], tuple[TreeHead, int, str]] = {}
        self._unrecorded: dict[str, Envelope] = {}  # join requests no evidence record covers yet
        self._receipts: dict[str, Envelope] = {}  # receipts made for them and not yet sent for sure
        self.split_views: list[str] = []

    @property
    def size(self) -> int:
        return self.log_state.size

    # -- witnessing ------------------------------------------------------------------

    @handles(EVIDENCE_RECORDED)
    async def on_evidence(self, ev: Event[events.EvidenceRecorded]) -> None:
        leaf = ev.envelope.encode()
        ids = (ev.envelope.event_id, ev.payload["event_id"])
        position = self._witnessed
        if position < self.log_state.size:
            if self.log_state.leaf(position) != leaf:
                raise HistoryRewrittenError(
                    f"leaf {position} of the stored log is not the record now at that place on the evidence topic"
                )
            self.log_state.index_events(position, ids)
        else:
            self.log_state.append(leaf, ids)
        self._witnessed += 1
        self._unrecorded.pop(ev.payload["event_id"], None)
        self._receipts.pop(ev.payload["event_id"], None)

    @handles(JOIN_REQUESTED)
    async def on_join_requested(self, ev: Event[events.JoinRequested]) -> None:
        if self.ctx.config.role == "operator" and not self.readonly:
            self._unrecorded[ev.envelope.event_id] = ev.envelope

    # -- heads and countersignatures ---------------------------------------------------

    def _judge(self, head: TreeHead, who: str) -> None:
        """Raise SplitViewError unless ``head`` agrees with every head seen and with this party's log."""
        seen = self.heads.get((head.log_id, head.tree_size))
        problem = None
        if seen is not None and seen != head.root_hash:
            problem = f"{head.log_id} showed two roots for size {head.tree_size}"
        elif head.tree_size > self._witnessed:
            problem = f"{head.log_id} claims {head.tree_size} leaves; {self.me} witnessed {self._witnessed}"
        elif self.log_state.tree.root(head.tree_size) != head.root_hash:
            problem = f"{head.log_id}'s root at size {head.tree_size} is not {self.me}'s"
        if problem is not None:
            self.split_views.append(problem)
            self.log.error("split_view", log_id=head.log_id, tree_size=head.tree_size, by=who, detail=problem)
            raise SplitViewError(problem)
        self.heads[(head.log_id, head.tree_size)] = head.root_hash

    @handles(TREE_HEAD)
    async def on_tree_head(self, ev: Event[events.TreeHead]) -> None:
        head = TreeHead.from_payload(ev.payload)
        if head.log_id != ev.sender:
            raise UnauthorisedError(f"{ev.sender} may not sign heads of {head.log_id}'s log")
        head.verify(ev.speaker.public_key)
        self._judge(head, ev.sender)
        self.latest_head[head.log_id] = head
        assert isinstance(ev.speaker, NodeCertificate)  # only a JoinRequested has another speaker
        pending = (head, ev.envelope.issued_at, ev.speaker.serial)
        if head.log_id != self.me and self._may_cosign(*pending):
            self._to_cosign[(head.log_id, head.tree_size, head.root_hash)] = pending

    def _may_cosign(self, head: TreeHead, issued_at: int, serial: str) -> bool:
        """Whether, as far as this party has read, the head's keeper was not yet revoked when it signed it.

        The evidence topic accepts a revoked keeper's heads (they must still agree with the log), but a
        witness vouches for none signed from the keeper's cut on: the head's own timestamp and its
        envelope's issued_at must both be before the cut of the certificate it was signed under. A
        revocation read later drops what is still pending (``on_revocation``).
        """
        cut = self.trust.revoked_from(serial)
        return cut is None or max(head.timestamp, issued_at) < cut

    @handles(CONTRACT_TERMINATED, CERTIFICATE_REVOKED)
    async def on_revocation(self, ev: Event[events.ContractTerminated | events.CertificateRevoked]) -> None:
        """Drop pending countersignatures of heads their keeper signed from the cut on (trust is applied first).

        A head read before the revocation can still have been countersigned already; the auditor
        reports such a countersignature rather than failing it (docs/protocol.md §13.5, §13.8).
        """
        for key, pending in list(self._to_cosign.items()):
            head = pending[0]
            if not self._may_cosign(*pending):
                del self._to_cosign[key]
                self.counts["cosignature_dropped"] += 1
                self.log.info(
                    "cosignature_dropped", log_id=head.log_id, tree_size=head.tree_size, after=ev.envelope.payload_type
                )

    @handles(TREE_HEAD_COSIGNED)
    async def on_cosigned(self, ev: Event[events.TreeHeadCosigned]) -> None:
        p = ev.payload
        if p["witness"] != ev.sender:
            raise UnauthorisedError(f"{ev.sender} may not countersign as {p['witness']}")
        verify_cosignature(p, ev.speaker.public_key)
        self._judge(cosigned_head(p), ev.sender)
        if p["witness"] == self.me:
            self._to_cosign.pop((p["log_id"], p["tree_size"], p["root_hash"]), None)

    # -- own work once caught up ---------------------------------------------------------

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._keep()] if self.keeps else []

    async def _keep(self) -> None:
        """Record receipts, countersign what agrees, and sign a head whenever the log grew."""
        while True:
            if self.trust.can_sign(self.me):
                try:
                    await self._record_receipts()
                    await self._cosign_pending()
                    mine = self.latest_head.get(self.me)
                    if self.size > (mine.tree_size if mine else 0):
                        await self.publish_head()
                except (KafkaError, TimeoutError) as exc:
                    self.log.warning("evidence_publish_failed", error=f"{type(exc).__name__}: {exc}")
                self.log_state.sync()
            await asyncio.sleep(self.head_interval)

    async def _record_receipts(self) -> None:
        """Record each join request no evidence covers yet, once: one record per event and recorder (§13.7).

        A receipt whose send failed is sent again as the same envelope, not a new one: if the broker had it
        after all, receivers skip the second copy as a duplicate instead of witnessing a second record.
        """
        for event_id, env in list(self._unrecorded.items()):
            receipt = self._receipts.get(event_id)
            if receipt is None:
                proof = evidence_of(GOVERNED[JOIN_REQUESTED], "registry", env)
                receipt = self._receipts[event_id] = self.ctx.publisher.envelope(EVIDENCE_RECORDED, proof, env.subject)
            await self.ctx.publisher.send("evidence", receipt)
            self._unrecorded.pop(event_id, None)
            self._receipts.pop(event_id, None)

    @property
    def pending_receipts(self) -> int:
        """Join requests read that no evidence record covers yet (an operator records them once caught up)."""
        return len(self._unrecorded)

    @property
    def pending_cosignatures(self) -> int:
        """Heads of other logs read and not yet countersigned (published and acknowledged)."""
        return len(self._to_cosign)

    async def _cosign_pending(self) -> None:
        for key, (head, _, _) in list(self._to_cosign.items()):
            if key not in self._to_cosign:
                continue  # dropped by a revocation read while an earlier countersignature was being published
            payload = cosign(head, self.me, self.ctx.publisher.signer)
            await self.ctx.publisher.publish("evidence", TREE_HEAD_COSIGNED, payload, subject=head.log_id)
            self._to_cosign.pop(key, None)

    async def publish_head(self) -> TreeHead:
        """Sign and publish the head of this party's log as it is now (on demand, or at the interval)."""
        size = self.size
        head = TreeHead(self.me, size, self.log_state.tree.root(size), now_ms()).signed(self.ctx.publisher.signer)
        await self.ctx.publisher.publish("evidence", TREE_HEAD, head.payload(), subject=self.me)
        self.latest_head[self.me] = head
        self.log.info("tree_head_published", tree_size=size, root_hash=head.root_hash.hex())
        return head
