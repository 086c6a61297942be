"""CLI of the evidence log: ``interfed audit`` (replay and verdict, proofs) and ``interfed evidence head``.

The auditor, the services and the Kafka client load inside the commands (a quick start for every command).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from mesh.cli import EXIT_AUDIT_FAILED, EXIT_INCOMPLETE, fail
from services.registry.cli import BootstrapOpt, HomeOpt, _open_home, _settings

if TYPE_CHECKING:
    from mesh.bus import KafkaBus
    from mesh.home import NodeHome
    from mesh.settings import MeshSettings
    from services.evidence.audit import Auditor
    from services.evidence.heads import TreeHead

out = Console(highlight=False)

audit_app = typer.Typer(
    help=(
        "Replay the evidence log and the governed topics read-only and check everything; exits 6 naming any "
        "violation. Subcommands print inclusion and consistency proofs."
    ),
    invoke_without_command=True,
)
evidence_app = typer.Typer(help="This node's evidence log.", no_args_is_help=True)


async def record_count(bus: KafkaBus, topics: tuple[str, ...]) -> int:
    """How many records the topics hold now: the length of a replay, for its progress bar."""
    reader = bus.reader(bus.names(t) for t in topics)
    await reader.start()
    try:
        return await reader.held()
    finally:
        await reader.stop()


async def replay(
    home: NodeHome,
    settings: MeshSettings,
    bootstrap: str,
    trusted: list[TreeHead] | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 3600.0,
) -> Auditor:
    """Replay everything an audit reads, read-only, and return the auditor.

    Its report is ready either way: caught up within ``timeout`` seconds, or not, and then the
    report says the audit is incomplete (it never passes on a partial read).
    """
    from mesh.node import connect, open_context, running
    from services.evidence.audit import Auditor

    async with connect(settings, bootstrap, home, applicant=False) as bus:
        auditor = Auditor(open_context(home, bus, settings), trusted)
        total = await record_count(bus, tuple(dict.fromkeys(("schemas", "registry", *auditor.topics))))
        task = asyncio.create_task(_watch(auditor, total, progress))
        try:
            async with running(auditor, timeout=timeout):
                pass
        except TimeoutError:
            auditor.log.warning("audit_incomplete", records_read=auditor.records, timeout=timeout)
        finally:
            task.cancel()
        if progress is not None:
            progress(auditor.records, max(total, auditor.records))
        return auditor


async def _watch(auditor: Auditor, total: int, progress: Callable[[int, int], None] | None) -> None:
    while progress is not None:
        progress(auditor.records, max(total, auditor.records))
        await asyncio.sleep(0.1)


def _replay_with_progress(
    home: NodeHome, settings: MeshSettings, trusted: list[TreeHead], timeout: float = 3600.0
) -> Auditor:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TextColumn("records"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        job = bar.add_task("replay", total=None)
        assert settings.bootstrap
        return asyncio.run(
            replay(
                home,
                settings,
                settings.bootstrap,
                trusted,
                lambda done, total: bar.update(job, completed=done, total=total),
                timeout,
            )
        )


def print_summary(report: dict[str, Any], console: Console = out) -> None:
    """The audit's verdict for people: what was read, each log's latest head, refused input, every violation."""
    from rich.table import Table

    console.print(
        f"read {report['records_read']} records: {report['governed_events']} governed events, "
        f"{report['evidence_records']} evidence records; log of {report['tree_size']} leaves, "
        f"root {report['root_hash'][:16]}…"
    )
    heads = Table(title="signed tree heads (latest per log)", title_justify="left")
    for col in ("log", "heads", "size", "root", "countersigned by"):
        heads.add_column(col)
    for log_id, h in report["logs"].items():
        latest = h["latest"] or {}
        late = f" (+{h['late_heads']} after its cut)" if h["late_heads"] else ""
        heads.add_row(
            log_id,
            f"{h['heads']}{late}",
            str(latest.get("tree_size", "-")),
            str(latest.get("root_hash", "-"))[:16] + "…",
            ", ".join(h["cosigned_by"]) or "-",
        )
    console.print(heads)
    _print_not_violations(report, console)
    if not report["complete"]:
        console.print(
            "[red]audit incomplete[/]: the whole log could not be read, so nothing is vouched for: "
            + "; ".join(
                f"{u['topic']}[{u['partition']}] read to {u['read_to']} of {u['end']}" if "end" in u else u["detail"]
                for u in report["unread"]
            )
        )
        return
    if report["passed"]:
        console.print("[green]audit passed[/]: every signature, head, consistency and completeness check holds")
        return
    table = Table(title="violations", title_justify="left")
    for col in ("reason", "where", "detail"):
        table.add_column(col)
    for v in report["violations"][:50]:
        where = f"{v['topic']}[{v['partition']}]@{v['offset']}" if v["topic"] else "-"
        table.add_row(f"[red]{v['reason']}[/]", where, v["detail"])
    console.print(table)
    more = len(report["violations"]) - 50
    console.print(
        f"[red]audit failed[/]: {report['violations_by_reason']}"
        + (f" ({more} more in the report)" if more > 0 else "")
    )


def _print_not_violations(report: dict[str, Any], console: Console) -> None:
    """What the audit reports without failing (docs/audit.md): refused input, and what was signed after a cut."""
    from rich.table import Table

    refused = report["refused_input"]
    if refused["count"]:
        console.print(
            f"refused input, not violations: {refused['count']} records nobody accepted "
            f"(by reason: {refused['by_reason']}; each with its offset in the JSON report)"
        )
        table = Table()
        for col in ("topic", "reason", "records"):
            table.add_column(col)
        for topic, reasons in refused["by_topic"].items():
            for reason, n in reasons.items():
                table.add_row(topic, reason, str(n))
        console.print(table)
    late = Counter(entry["kind"] for entry in report["after_revocation"])
    if late:
        console.print(
            "signed after the signer's revocation or termination, reported, not violations: "
            + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(late.items()))
        )


def _trusted(paths: list[Path]) -> list[TreeHead]:
    from services.evidence.heads import TreeHead

    heads = []
    for path in paths:
        try:
            heads.append(TreeHead.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"--trusted-head {path}: not a tree head JSON ({type(exc).__name__}: {exc})")
    return heads


@audit_app.callback()
def audit(
    ctx: typer.Context,
    home: HomeOpt,
    bootstrap: BootstrapOpt = None,
    report: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    trusted_head: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="FILE", help="a tree head JSON known good earlier (a past audit's final_head); repeatable"
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, help="seconds to read the whole log before giving up (exit 7: incomplete)")
    ] = 600.0,
) -> None:
    """Audit the federation; exits 6 naming the violations if any check fails, 7 if it cannot read everything."""
    ctx.obj = (home, bootstrap, timeout)
    if ctx.invoked_subcommand is not None:
        return
    settings, node = _settings(bootstrap), _open_home(home)
    auditor = _replay_with_progress(node, settings, _trusted(trusted_head or []), timeout)
    result = auditor.report()
    final = auditor.final_head()
    result["final_head"] = final.to_json() if final else None
    if report is not None:
        report.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_summary(result)
    if not result["complete"]:
        raise SystemExit(EXIT_INCOMPLETE)
    if not result["passed"]:
        raise SystemExit(EXIT_AUDIT_FAILED)


def _proof_context(ctx: typer.Context) -> Auditor:
    home, bootstrap, timeout = ctx.obj
    settings, node = _settings(bootstrap), _open_home(home)
    auditor = _replay_with_progress(node, settings, [], timeout)
    if not auditor.report()["complete"]:
        fail(f"could not read the whole log within {timeout:.0f} s; no proof from a partial read", EXIT_INCOMPLETE)
    return auditor


def _public_key(auditor: Auditor, head: TreeHead) -> str:
    """The key of the certificate the head was signed under (a node approved again has had several)."""
    key = auditor.signer_key(head)
    return key.hex() if key else ""


@audit_app.command("prove")
def prove(ctx: typer.Context, event_id: str) -> None:
    """Print, as JSON, the inclusion proof of an event's evidence record under the latest signed tree head."""
    auditor = _proof_context(ctx)
    index = auditor.log_state.index_of(event_id)
    if index is None:
        fail(f"no evidence record for event {event_id} on the evidence topic")
    head = auditor.final_head()
    if head is None or head.tree_size <= index:
        fail(f"evidence leaf {index} is not yet covered by a signed tree head; ask for one: interfed evidence head")
    leaf = auditor.log_state.leaf(index)
    proof = {
        "event_id": event_id,
        "leaf_index": index,
        "leaf": leaf.hex(),
        "inclusion_proof": [h.hex() for h in auditor.tree.inclusion_proof(index, head.tree_size)],
        "tree_head": head.to_json(),
        "log_public_key": _public_key(auditor, head),
    }
    print(json.dumps(proof, indent=2))


@audit_app.command("consistency")
def consistency(
    ctx: typer.Context,
    log: Annotated[str | None, typer.Option(help="whose heads (default: the log of the latest head)")] = None,
    old_size: Annotated[int | None, typer.Option(help="size of the older head (default: the log's first)")] = None,
    new_size: Annotated[int | None, typer.Option(help="size of the newer head (default: the log's latest)")] = None,
) -> None:
    """Print, as JSON, the consistency proof between two signed tree heads of one log."""
    auditor = _proof_context(ctx)
    final = auditor.final_head()
    log_id = log or (final.log_id if final else None)
    heads = auditor.logs[log_id].heads if log_id in auditor.logs else []
    if not heads:
        fail(f"no signed tree heads of log {log_id!r}")

    def pick(size: int | None, default: TreeHead) -> TreeHead:
        found = [h for h in heads if h.tree_size == size] if size is not None else [default]
        if not found:
            fail(f"{log_id} signed no head of size {size}; its sizes: {sorted({h.tree_size for h in heads})}")
        return found[-1]

    old, new = pick(old_size, heads[0]), pick(new_size, heads[-1])
    if old.tree_size > new.tree_size or new.tree_size > auditor.tree.size:
        fail(f"no consistency proof from size {old.tree_size} to {new.tree_size} (the log holds {auditor.tree.size})")
    proof = {
        "old_head": old.to_json(),
        "new_head": new.to_json(),
        "consistency_proof": [h.hex() for h in auditor.tree.consistency_proof(old.tree_size, new.tree_size)],
        "log_public_key": _public_key(auditor, new),
    }
    print(json.dumps(proof, indent=2))


@evidence_app.command("head")
def head(home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Sign and publish this node's tree head now (on demand), from a fresh replay of the evidence topic."""
    from mesh.node import connect, open_context, running
    from services.evidence.service import EvidenceService

    settings, node = _settings(bootstrap), _open_home(home)

    async def go() -> TreeHead:
        assert settings.bootstrap
        async with connect(settings, settings.bootstrap, node, applicant=False) as bus:
            svc = EvidenceService(open_context(node, bus, settings), persist=False, keep=False)
            svc.reports_refusals = False  # the running node reports them; a command would report them all again
            async with running(svc):
                return await svc.publish_head()

    published = asyncio.run(go())
    out.print(f"tree head published: size {published.tree_size}, root {published.root_hash.hex()}")
