"""The evidence benchmark: log appends, inclusion proofs at 10^6 leaves, and the auditor's replay rate."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.bus import _member
from mesh.bus import Record
from mesh.events import NODE_ANNOUNCED
from mesh.home import NodeConfig, NodeHome
from mesh.node import connect, open_context, running
from mesh.settings import MeshSettings
from mesh.testing import eventually
from services.evidence.audit import Auditor
from services.evidence.merkle import MerkleLog, leaf_hash, verify_inclusion
from services.evidence.service import EvidenceService
from services.evidence.state import EvidenceLog


def run_evidence_bench(
    root: Path, settings: MeshSettings, bootstrap: str, leaves: int, events: int, progress: Progress
) -> EvidenceResult:
    figures = log_figures(leaves, progress)
    replayed = asyncio.run(replay_figures(root, settings, bootstrap, events, progress))
    return EvidenceResult(leaves=leaves, **figures, **replayed)  # type: ignore[arg-type]


#: The issue's aims: (direction, value), printed beside each figure.
AIMS = {
    "replay_events_per_cpu_second": (">=", 5000.0),
    "inclusion_verify_us": ("<=", 1000.0),
}

#: About the size of a real EvidenceRecorded record value.
LEAF_BYTES = 330

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class EvidenceResult:
    leaves: int
    appends_per_second: float
    persisted_appends_per_second: float
    inclusion_proof_us: float
    inclusion_verify_us: float
    consistency_proof_us: float
    replay_events: int
    replay_events_per_second: float
    replay_events_per_cpu_second: float
    replay_audit_passed: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _leaves(count: int) -> list[bytes]:
    rng = random.Random(7)
    return [rng.randbytes(LEAF_BYTES) for _ in range(count)]


def log_figures(leaves: int, progress: Progress) -> dict[str, float]:
    """Appends per second (in memory and persisted), and proof times at ``leaves`` leaves."""
    data = _leaves(min(leaves, 100_000))
    log = MerkleLog()
    started = time.perf_counter()
    for i in range(leaves):
        log.append(data[i % len(data)])
        if i % 50_000 == 0:
            progress("append", i / leaves)
    appends = leaves / (time.perf_counter() - started)
    progress("append", 1.0)
    with tempfile.TemporaryDirectory(prefix="interfed-bench-log-") as folder:
        stored = EvidenceLog(Path(folder) / "log.bin")
        count = len(data)
        started = time.perf_counter()
        for leaf in data:
            stored.append(leaf)
        stored.sync()
        persisted = count / (time.perf_counter() - started)
        stored.close()
    rng = random.Random(11)
    indexes = [rng.randrange(leaves) for _ in range(20_000)]
    root = log.root()
    started = time.perf_counter()
    proofs = [log.inclusion_proof(i, leaves) for i in indexes]
    prove_us = (time.perf_counter() - started) / len(indexes) * 1e6
    progress("proofs", 0.5)
    hashes = [leaf_hash(data[i % len(data)]) for i in indexes]
    started = time.perf_counter()
    for i, h, proof in zip(indexes, hashes, proofs, strict=True):
        if not verify_inclusion(h, i, leaves, proof, root):
            raise AssertionError(f"inclusion proof of leaf {i} does not verify")
    verify_us = (time.perf_counter() - started) / len(indexes) * 1e6
    sizes = [rng.randrange(1, leaves) for _ in range(2_000)]
    started = time.perf_counter()
    for old in sizes:
        log.consistency_proof(old, leaves)
    consistency_us = (time.perf_counter() - started) / len(sizes) * 1e6
    progress("proofs", 1.0)
    return {
        "appends_per_second": round(appends, 1),
        "persisted_appends_per_second": round(persisted, 1),
        "inclusion_proof_us": round(prove_us, 2),
        "inclusion_verify_us": round(verify_us, 2),
        "consistency_proof_us": round(consistency_us, 2),
    }


async def replay_figures(
    root: Path, settings: MeshSettings, bootstrap: str, events: int, progress: Progress
) -> dict[str, float | int | bool]:
    """A member announces ``events`` times, each evidenced; an auditor then replays everything."""
    async with _member(root, settings, bootstrap) as (op, member), connect(settings, bootstrap) as bus:
        ctx = open_context(member, bus, settings)
        cfg = ctx.config
        announce = {
            "node_id": cfg.node_id,
            "contract_id": json.loads((member.state_path / "contract.json").read_text())["contract_id"],
            "name": cfg.name,
            "institution": cfg.institution,
            "platform": cfg.platform,
            "platform_version": cfg.platform_version,
            "address": cfg.address,
            "services": ["registry"],
        }
        witness = EvidenceService(open_context(op, bus, settings), head_interval=0.5, persist=False)
        async with running(witness):
            window = 128
            for first in range(0, events, window):
                batch = min(window, events - first)
                await asyncio.gather(
                    *(
                        ctx.publisher.publish(
                            "registry", NODE_ANNOUNCED, announce, cfg.node_id, evidence="registry.announce"
                        )
                        for _ in range(batch)
                    )
                )
                progress("publish", (first + batch) / events)
            # Every announcement, the approval and the operator's receipt of the application are leaves.
            await eventually(
                lambda: (head := witness.latest_head.get("operator")) is not None and head.tree_size >= events + 2,
                120,
                "the operator's head covering every evidence record",
            )
        audit_cfg = NodeConfig(node_id="auditor", name="auditor", institution="bench", platform="interfed")
        auditor = _TimedAuditor(
            open_context(NodeHome.create(root / "auditor", audit_cfg, op.federation_path), bus, settings)
        )
        started, cpu = time.perf_counter(), time.process_time()
        async with running(auditor, timeout=600):
            wall, cpu = auditor.last_at - started, time.process_time() - cpu
        progress("replay", 1.0)
        report = auditor.report()
        return {
            "replay_events": auditor.records,
            "replay_events_per_second": round(auditor.records / wall, 1),
            "replay_events_per_cpu_second": round(auditor.records / cpu, 1),
            "replay_audit_passed": bool(report["passed"]),
        }


class _TimedAuditor(Auditor):
    """The auditor, noting when it processed its last record (its catch-up test waits an idle fetch more)."""

    last_at = 0.0

    async def process(self, record: Record) -> None:
        await super().process(record)
        self.last_at = time.perf_counter()
