"""``interfed bench``: run a benchmark with progress, print a table (or JSON) of its figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from bench.mesh import MeshOptions, Runs
    from bench.vertical import CoreRow

app = typer.Typer(help="Benchmarks (never part of the test suite's pass/fail).", no_args_is_help=True)
out = Console(highlight=False)

#: The issue's aims, printed beside each figure.
BUS_AIMS = {
    "verify_apply_per_second": (">=", 5000.0),
    "end_to_end_per_second": (">=", 5000.0),
    "latency_p99_ms": ("<=", 50.0),
    "two_process_latency_p99_ms": ("<=", 50.0),
    "node_rss_mb": ("<=", 200.0),
}


def _scratch(stack: contextlib.ExitStack, prefix: str = "interfed-bench-") -> Path:
    """A temporary folder for one benchmark (its broker, its parties' homes), with the benchmark's log in it."""
    from mesh import logs

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    logs.configure(path=root / "bench.jsonl")
    return root


def _progress(*, bar: bool = True) -> Progress:
    """Progress on stderr, gone once done: stdout keeps only the tables (or the JSON)."""
    columns = (TextColumn("{task.description}"), *((BarColumn(),) if bar else ()), TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True), transient=True)


def _tick(ok: bool) -> str:
    """A figure's verdict against its aim, in colour."""
    return "[green]✓[/]" if ok else "[red]✗[/]"


def _psi_mark(ids_per_side: int, seconds: float) -> str:
    """The verdict beside a PSI time at 10^5 ids per side, the size its aim is set for (bench.vertical)."""
    from bench.vertical import PSI_AIM_SECONDS

    return f" {_tick(seconds < PSI_AIM_SECONDS)}" if ids_per_side == 100_000 else ""


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], *, left: Collection[str] = ()) -> None:
    """Print a table: figures right-aligned, the columns named in ``left`` (names, aims, verdicts) left-aligned."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _aims_table(title: str, figures: Mapping[str, object], aims: Mapping[str, tuple[str, float]]) -> None:
    """Print each figure beside its aim, if it has one, and the ratio to it (above 1x: better than the aim)."""
    rows = []
    for key, value in figures.items():
        aim = aims.get(key)
        ratio = ""
        if aim and isinstance(value, float):
            ratio = f"{value / aim[1]:.2f}x" if aim[0] == ">=" else f"{aim[1] / value:.2f}x"
        rows.append((key, str(value), f"{aim[0]} {aim[1]:g}" if aim else "", ratio))
    _table(title, ("figure", "value", "aim", "ratio to aim"), rows, left=("figure", "aim"))


@app.command("bus")
def bench_bus(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="INTERFED_BOOTSTRAP", help="broker to measure (default: start the embedded one)"
        ),
    ] = None,
    events: Annotated[int, typer.Option(min=100, help="events for the throughput run")] = 20_000,
    rate: Annotated[float, typer.Option(min=1, help="offered load (events/s) for the latency run")] = 1000.0,
    seconds: Annotated[float, typer.Option(min=1, help="length of the latency run")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Verified events/s end to end on one core, p50/p99 latency at a fixed load, node memory."""
    from bench.bus import run_bus_bench
    from mesh.brokers import TansuBroker
    from mesh.settings import load_settings

    # A topic prefix of its own: a broker used before holds other federations' events.
    settings = load_settings(bootstrap=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    with contextlib.ExitStack() as stack:
        root = _scratch(stack)
        address = settings.bootstrap or stack.enter_context(TansuBroker(root / "broker")).bootstrap
        progress = stack.enter_context(_progress())
        tasks = {
            "publish": progress.add_task(f"sign + produce {events} events", total=1.0),
            "verify": progress.add_task(f"consume + verify + apply {events} events", total=1.0),
            "end to end": progress.add_task(f"both at once, {events} events", total=1.0),
            "latency": progress.add_task(f"latency at {rate:.0f}/s for {seconds:.0f} s", total=1.0),
            "two processes": progress.add_task("the same load from another process", total=1.0),
        }
        result = asyncio.run(
            run_bus_bench(
                root,
                settings,
                address,
                events,
                rate,
                seconds,
                lambda name, done: progress.update(tasks[name], completed=min(done, 1.0)),
            )
        )
    figures: dict[str, object] = dict(result.as_dict())
    figures["broker"] = "external " + address if settings.bootstrap else "embedded tansu"
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    _aims_table("bus benchmark: sign, encode, produce -> consume, verify, decode, apply", figures, BUS_AIMS)


@app.command("evidence")
def bench_evidence(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="INTERFED_BOOTSTRAP", help="broker for the replay (default: start the embedded one)"
        ),
    ] = None,
    leaves: Annotated[int, typer.Option(min=1000, help="leaves of the log the proofs are measured at")] = 1_000_000,
    events: Annotated[int, typer.Option(min=100, help="evidenced events the auditor replays")] = 5_000,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Evidence log appends/s, inclusion proofs at 10^6 leaves, and the auditor's replay rate per core."""
    from bench.evidence import AIMS, run_evidence_bench
    from mesh.brokers import TansuBroker
    from mesh.settings import load_settings

    settings = load_settings(bootstrap=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    with contextlib.ExitStack() as stack:
        root = _scratch(stack)
        address = settings.bootstrap or stack.enter_context(TansuBroker(root / "broker")).bootstrap
        progress = stack.enter_context(_progress())
        tasks = {
            "append": progress.add_task(f"append {leaves:,} leaves", total=1.0),
            "proofs": progress.add_task(f"inclusion and consistency proofs at {leaves:,} leaves", total=1.0),
            "publish": progress.add_task(f"publish {events:,} evidenced events", total=1.0),
            "replay": progress.add_task("audit: replay and check everything", total=1.0),
        }
        result = run_evidence_bench(
            root,
            settings,
            address,
            leaves,
            events,
            lambda name, done: progress.update(tasks[name], completed=min(done, 1.0)),
        )
    figures: dict[str, object] = dict(result.as_dict())
    figures["broker"] = "external " + address if settings.bootstrap else "embedded tansu"
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    _aims_table("evidence benchmark: Merkle log, proofs, audit replay (one process)", figures, AIMS)


@app.command("paillier")
def bench_paillier(
    key_bits: Annotated[int, typer.Option("--key-bits", min=512, help="Paillier modulus size")] = 2048,
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the figures to this JSON file")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="shorter vectors and timings (under a minute)")] = False,
) -> None:
    """Paillier ops/s on one core, ours against phe (with gmpy2), each figure against the issue's target."""
    from bench.paillier import TARGETS, run_paillier_bench

    with _progress() as progress:
        task = progress.add_task(f"Paillier, {key_bits}-bit key: generating keys", total=len(TARGETS))
        rows, meta = run_paillier_bench(
            key_bits, quick, lambda figure: progress.update(task, advance=1, description=f"done: {escape(figure)}")
        )
    _table(
        f"Paillier on one core, {key_bits}-bit key, ours vs phe (gmpy2: {meta['phe_uses_gmpy2']})",
        ("figure", "ours ops/s", "phe ops/s", "ratio", "target", "reached", "vs phe tuned"),
        [
            (
                escape(row.figure),  # "X^T [[d]]" is not markup
                f"{row.ours_per_second:,.0f}",
                f"{row.phe_per_second:,.0f}",
                f"{row.ratio:,.1f}x",
                f">= {row.target_ratio:g}x",
                "[green]✓ reached[/]" if row.reached else "[red]✗ not reached[/]",
                "" if row.tuned_ratio is None else f"{row.tuned_ratio:,.2f}x ({row.phe_tuned_per_second:,.0f}/s)",
            )
            for row in rows
        ],
        left=("figure", "reached"),
    )
    out.print(", ".join(f"{key}={value}" for key, value in meta.items()))
    if json_file is not None:
        json_file.write_text(json.dumps({"figures": [row.as_dict() for row in rows], **meta}, indent=2) + "\n")


@app.command("accel")
def bench_accel(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="INTERFED_BOOTSTRAP", help="broker to measure on (default: start the embedded one)"
        ),
    ] = None,
    key_bits: Annotated[int, typer.Option("--key-bits", min=512, help="Paillier modulus size")] = 2048,
    batches: Annotated[str, typer.Option("--batches", help="comma-separated batch sizes")] = "4096,16384",
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="runs per path; the best counts")] = 2,
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the figures to this JSON file")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="one batch of 4096, one run per path")] = False,
) -> None:
    """The accelerator through the broker: 2 workers against 1, and the service against the in-process path."""
    from bench.accel import OVERHEAD_AIM, SPEEDUP_AIM, run_accel_bench
    from mesh.brokers import TansuBroker

    try:
        sizes = [4096] if quick else [int(b) for b in batches.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--batches takes comma-separated integers, not {batches!r}") from None
    runs = 1 if quick else repeats
    with contextlib.ExitStack() as stack:
        root = _scratch(stack, "interfed-bench-accel-")
        address = bootstrap or stack.enter_context(TansuBroker(root / "broker")).bootstrap
        progress = stack.enter_context(_progress())
        task = progress.add_task("starting a federation, two accelerators and a 2048-bit key", total=1.0)
        rows, meta = asyncio.run(
            run_accel_bench(
                root,
                address,
                key_bits,
                sizes,
                runs,
                lambda what, done: progress.update(task, description=what, completed=done),
            )
        )
    meta["broker"] = "external " + address if bootstrap else "embedded tansu"
    _table(
        f"accelerator service, {key_bits}-bit key, {meta['broker']}: seconds best-worst of {runs} runs;"
        " ratios from the best",
        (
            "operation",
            "batch",
            *("in-process s", "1 worker s", "2 workers s"),  # best-worst of the runs
            f"2w/1w (>= {SPEEDUP_AIM:g}x)",
            f"overhead (<= {OVERHEAD_AIM:.0%})",
        ),
        [
            (
                row.operation,
                str(row.batch),
                *(f"{min(r):.2f}-{max(r):.2f}" for r in row.runs.values()),
                f"{row.speedup:.2f}x {_tick(row.speedup >= SPEEDUP_AIM)}",
                f"{row.overhead:+.1%} {_tick(row.overhead <= OVERHEAD_AIM)}",
            )
            for row in rows
        ],
        left=("operation",),
    )
    out.print(", ".join(f"{key}={value}" for key, value in meta.items()))
    if json_file is not None:
        json_file.write_text(json.dumps({"figures": [row.as_dict() for row in rows], **meta}, indent=2) + "\n")


@app.command("hfl")
def bench_hfl(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap",
            envvar="INTERFED_BOOTSTRAP",
            help="broker: Paillier through an accelerator service on it (default: in-process)",
        ),
    ] = None,
    parties: Annotated[str, typer.Option("--parties", help="comma-separated party counts")] = "3,10",
    sizes: Annotated[
        str, typer.Option("--sizes", help="comma-separated model sizes (parameters)")
    ] = "1000,10000,100000",
    key_bits: Annotated[int, typer.Option("--key-bits", min=1024, help="Paillier modulus size")] = 2048,
) -> None:
    """One HFL round's time with no protection, pairwise masks and packed Paillier; ratios against plaintext."""
    from bench.hfl import SCHEMES, run_hfl_bench

    try:
        counts, lengths = [int(p) for p in parties.split(",")], [int(s) for s in sizes.split(",")]
    except ValueError:
        raise typer.BadParameter("--parties and --sizes take comma-separated integers") from None
    with _progress(bar=False) as progress:
        task = progress.add_task("starting", total=None)
        rows, meta = asyncio.run(
            run_hfl_bench(counts, lengths, key_bits, bootstrap, lambda what: progress.update(task, description=what))
        )
    _table(
        f"HFL round time, seconds ({meta['paillier_path']}, {key_bits}-bit key)",
        ("parties", "parameters", *SCHEMES, "masks / none", "paillier / none"),
        [
            (
                str(row.parties),
                str(row.parameters),
                *(f"{row.seconds[s]:.4f}" for s in SCHEMES),
                f"{row.ratio('masks'):.1f}x",
                f"{row.ratio('paillier'):.1f}x",
            )
            for row in rows
        ],
    )
    out.print(", ".join(f"{key}={value}" for key, value in meta.items()))


def _sizes(option: str, value: str) -> list[int]:
    try:
        return [int(s) for s in value.split(",") if s]
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated integers, not {value!r}") from None


@app.command("vertical")
def bench_vertical(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="INTERFED_BOOTSTRAP", help="broker for the service path (default: embedded tansu)"
        ),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=256, help="rows of the hetero LR epoch")] = 2048,
    key_bits: Annotated[int, typer.Option("--key-bits", min=1024, help="the arbiter's Paillier key size")] = 2048,
    psi_sizes: Annotated[
        str, typer.Option("--psi-sizes", help="comma-separated ids per side")
    ] = "10000,100000,1000000",
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="PSI worker processes (one pool, shared by both parties)")
    ] = 2,
    service: Annotated[
        bool, typer.Option("--service/--no-service", help="also run the epoch through the accelerator service")
    ] = True,
) -> None:
    """A hetero LR epoch: accelerator (in-process, workers, service) against phe; its core against HEU; PSI."""
    from bench.vertical import RATIO_AIM, machine, run_core, run_epochs, run_psi
    from mesh.brokers import TansuBroker

    sizes = _sizes("--psi-sizes", psi_sizes)
    before = machine()
    with contextlib.ExitStack() as stack:
        root = _scratch(stack, "interfed-bench-vertical-")
        address = None
        if service:
            address = bootstrap or stack.enter_context(TansuBroker(root / "broker")).bootstrap
        progress = stack.enter_context(_progress())
        task = progress.add_task("hetero LR epochs", total=1.0)
        epochs = asyncio.run(
            run_epochs(
                root,
                address,
                rows,
                key_bits,
                lambda what, done: progress.update(task, description=what, completed=done),
            )
        )
        core, heu_missing = asyncio.run(
            run_core(
                root,
                address,
                rows,
                key_bits,
                lambda what, done: progress.update(task, description=what, completed=done),
            )
        )
        psi = []
        for size in sizes:
            progress.update(task, description=f"PSI, {size} ids per side")
            psi.append((size, *asyncio.run(run_psi(root, size, workers))))
    baseline = epochs[-1]

    def ratio_cell(theirs: float | None, ours: float | None, last: bool) -> str:
        if theirs is None or ours is None:
            return "n/a (worker processes)"
        ratio = theirs / ours
        return f"{ratio:.1f}x" + ("" if last else f" {_tick(ratio >= RATIO_AIM)}")

    _table(
        f"one hetero LR epoch, {rows} rows (guest 10 + host 20 features), batch 256, {key_bits}-bit key",
        ("path", "seconds", "bytes sent", f"phe / this (>= {RATIO_AIM:g}x)", "CPU s here", "phe / this, CPU"),
        [
            (
                row.path,
                f"{row.seconds:.2f}",
                f"{row.bytes_sent:,}",
                ratio_cell(baseline.seconds, row.seconds, row is baseline),
                "" if row.cpu_seconds is None else f"{row.cpu_seconds:.2f}",
                ratio_cell(baseline.cpu_seconds, row.cpu_seconds, row is baseline),
            )
            for row in epochs
        ],
        left=("path",),
    )
    _core_table(core, heu_missing, rows, key_bits)
    _table(
        f"ECDH-PSI over X25519, 80% common ids, {workers} worker process(es) shared by both parties",
        ("ids per side", "seconds", "bytes sent"),
        [(f"{size:,}", f"{seconds:.2f}{_psi_mark(size, seconds)}", f"{sent:,}") for size, seconds, sent in psi],
    )
    broker = "none (--no-service)" if address is None else "external " + address if bootstrap else "embedded tansu"
    out.print(f"broker={broker}, before={before}, after={machine()}")


def _core_table(core: Sequence[CoreRow], heu_missing: str | None, rows: int, key_bits: int) -> None:
    """The epoch's core on our paths and in HEU, each against HEU's Okamoto-Uchiyama; the aim marked on the two
    paths of a node's accelerator service: its workers as node up reaches them, and through the broker."""
    from bench.vertical import CORE_BATCH, CORE_FEATURES, HEU_AIM

    ou = next((row for row in core if row.path.startswith("HEU Okamoto-Uchiyama")), None)

    def ratio(row: CoreRow) -> str:
        if ou is None:
            return "n/a (no HEU)"
        cell = f"{ou.seconds / row.seconds:.1f}x"
        served = "service" in row.path or "node up" in row.path
        return f"{cell} {_tick(ou.seconds / row.seconds >= HEU_AIM)}" if served else cell

    def cpu_ratio(row: CoreRow) -> str:
        if ou is None or ou.cpu_seconds is None or row.cpu_seconds is None:
            return ""
        return f"{ou.cpu_seconds / row.cpu_seconds:.1f}x"

    _table(
        escape(
            f"the epoch's core, per batch of {CORE_BATCH}: encrypt the residuals d, X^T [[d]] ({CORE_FEATURES} sums), "
            f"decrypt; {rows} rows x {CORE_FEATURES} features, {key_bits}-bit keys"
        ),
        (
            "path",
            "seconds",
            f"HEU OU / this (node's accelerator >= {HEU_AIM:g}x)",
            "CPU s here",
            "HEU OU / this, CPU",
            "error / bound",
        ),
        [
            (
                row.path,
                f"{row.seconds:.2f}",
                ratio(row),
                "" if row.cpu_seconds is None else f"{row.cpu_seconds:.2f}",
                cpu_ratio(row),
                f"{row.error:.2f}",
            )
            for row in core
        ],
        left=("path",),
    )
    if heu_missing:
        out.print(escape(heu_missing))


@app.command("psi")
def bench_psi(
    sizes: Annotated[str, typer.Option("--sizes", help="comma-separated ids per side")] = "10000,100000",
    repeat: Annotated[
        int, typer.Option("--repeat", min=0, help="end-to-end runs per size (0: the stage table only)")
    ] = 1,
    workers: Annotated[int, typer.Option("--workers", min=1, help="worker processes (shared by both parties)")] = 2,
    sample: Annotated[int, typer.Option("--sample", min=1000, help="ids the stage costs are measured on")] = 20000,
) -> None:
    """ECDH-PSI: each stage's CPU cost per id and per run, then end-to-end runs (both parties in this process)."""
    from bench.psi import stage_costs
    from bench.vertical import machine, run_psi

    counts = _sizes("--sizes", sizes)
    before = machine()
    stages = stage_costs(sample)
    cores = max(1, min(workers, os.cpu_count() or 1))
    totals = [sum(stage.run_seconds(n) for stage in stages) for n in counts]
    _table(
        f"ECDH-PSI stages: CPU time in this process, measured on {sample:,} ids",
        ("stage", "µs per id", *(f"CPU-s, {n:,} per side" for n in counts)),
        [
            *(
                (
                    f"{stage.name} (x{stage.per_run})",
                    f"{stage.micros_per_id:.2f}",
                    *(f"{stage.run_seconds(n):.2f}" if stage.per_run else "-" for n in counts),
                )
                for stage in stages
            ),
            ("all stages", "", *(f"{t:.2f}" for t in totals)),
            (f"lower bound on {cores} idle core(s)", "", *(f"{t / cores:.2f}" for t in totals)),
        ],
        left=("stage",),
    )
    if not repeat:
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="interfed-bench-psi-") as root:
        for n in counts:
            for run in range(1, repeat + 1):
                load = os.getloadavg()[0]
                seconds, sent = asyncio.run(run_psi(Path(root), n, workers))
                runs.append(
                    (
                        f"{n:,}",
                        str(run),
                        f"{seconds:.2f}{_psi_mark(n, seconds)}",
                        f"{sent:,}",
                        f"{load:.2f}",
                        f"{os.getloadavg()[0]:.2f}",
                    )
                )
    _table(
        f"end to end: 80% common ids, {workers} worker process(es) shared by both parties",
        ("ids per side", "run", "seconds", "bytes sent", "load before", "load after"),
        runs,
    )
    out.print(f"before={before}, after={machine()}; the first run in this process also starts the worker processes")


#: Model sizes of the rounds benchmark: 10^3 to 10^6 parameters.
SIZES = [1_000, 10_000, 100_000, 1_000_000]


@app.command("rounds")
def bench_rounds(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="INTERFED_BOOTSTRAP", help="broker to measure (default: start the embedded one)"
        ),
    ] = None,
    parties: Annotated[list[int], typer.Option(min=2, help="party counts (aggregator included)")] = [3, 10, 30],  # noqa: B006
    sizes: Annotated[list[int], typer.Option(min=1, help="model sizes in parameters")] = SIZES,
    rounds: Annotated[int, typer.Option(min=2, help="rounds per job (the first is not counted)")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Plaintext FedAvg round time through the real transport against party count and model size."""
    from bench.rounds import SECURE_SCHEMES, run_rounds_bench
    from mesh.brokers import TansuBroker
    from mesh.settings import load_settings

    settings = load_settings(bootstrap=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.", heartbeat_interval=5.0)
    with contextlib.ExitStack() as stack:
        root = _scratch(stack)
        address = settings.bootstrap or stack.enter_context(TansuBroker(root / "broker")).bootstrap
        progress = stack.enter_context(_progress(bar=False))
        task = progress.add_task("starting", total=None)
        figures = asyncio.run(
            run_rounds_bench(
                root, settings, address, parties, sizes, rounds, lambda what: progress.update(task, description=what)
            )
        )
    rows = [vars(f) for f in figures]
    if as_json:
        print(json.dumps({"broker": address if settings.bootstrap else "embedded tansu", "figures": rows}, indent=2))
        return
    _table(
        f"plaintext rounds through the transport ({rounds} rounds a job, median of all but the first)",
        ("parties", "parameters", "median round (s)", "slowest round (s)", "whole job (s)"),
        [(str(f.parties), f"{f.size:,}", f"{f.median_s:.3f}", f"{f.max_s:.3f}", f"{f.job_s:.1f}") for f in figures],
    )
    if not SECURE_SCHEMES:
        out.print("secure-aggregation overhead: measured by the HFL component's benchmark (not in this build)")


@app.command("hostile")
def bench_hostile(
    bootstrap: Annotated[
        str | None,
        typer.Option("--bootstrap", envvar="INTERFED_BOOTSTRAP", help="broker to use (default: start Apache Kafka)"),
    ] = None,
    forged: Annotated[int, typer.Option(min=1, help="forged records to inject during the job")] = 10_000,
    rounds: Annotated[int, typer.Option(min=2, help="rounds of the FedAvg job (the first is not counted)")] = 40,
    size: Annotated[int, typer.Option(min=1, help="model size in parameters")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Forged records on registry, heartbeats and rounds during a three-party job: refused, reported, round time."""
    from bench.hostile import run_hostile_bench
    from mesh.brokers import ApacheKafkaBroker
    from mesh.settings import load_settings

    settings = load_settings(bootstrap=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.", heartbeat_interval=2.0)
    with contextlib.ExitStack() as stack:
        root = _scratch(stack)
        progress = stack.enter_context(_progress(bar=False))
        task = progress.add_task("starting Apache Kafka" if bootstrap is None else "starting", total=None)
        address = settings.bootstrap or stack.enter_context(ApacheKafkaBroker(root / "kafka")).bootstrap
        figures = asyncio.run(
            run_hostile_bench(
                root, settings, address, forged, rounds, size, lambda what: progress.update(task, description=what)
            )
        )
    result = {**vars(figures), "round_ratio": round(figures.round_ratio, 3)}
    result["broker"] = "external " + address if settings.bootstrap else "Apache Kafka (started for the benchmark)"
    if as_json:
        print(json.dumps(result, indent=2))
        return
    verdict = "passed" if figures.audit_passed else f"FAILED {figures.audit_violations}"
    _table(
        f"{figures.forged:,} forged records during a three-party job ({rounds} rounds of {size:,})",
        ("figure", "value", "aim"),
        [
            ("median round, undisturbed (s)", f"{figures.undisturbed_round_s:.3f}", ""),
            ("median round, under forged records (s)", f"{figures.hostile_round_s:.3f}", ""),
            ("ratio", f"{figures.round_ratio:.2f}x", "<= 1.10x"),
            ("forged records (written in s)", f"{figures.forged:,} ({figures.forge_seconds:.1f})", ""),
            *((f"  expected {reason}", f"{n:,}", "") for reason, n in figures.by_reason.items()),
            *(
                (f"  dead-lettered by {node}", f"{n:,}", f"{figures.forged:,}")
                for node, n in figures.reported_by.items()
            ),
            ("missing letters / wrong reason", f"{figures.missing_letters} / {figures.wrong_reason}", "0 / 0"),
            ("services stopped", ", ".join(figures.crashed) or "none", "none"),
            *((f"RSS {name} (MB, all 4 nodes in one process)", f"{mb:.1f}", "") for name, mb in figures.rss_mb.items()),
            ("audit afterwards", verdict, "passed"),
            *(
                (f"  refused input on registry: {reason}", f"{n:,}", f"{figures.by_registry.get(reason, 0):,}")
                for reason, n in figures.audit_refused_input.items()
            ),
        ],
        left=("figure", "aim"),
    )


@app.command("mesh")
def bench_mesh(
    bootstrap: Annotated[
        str | None,
        typer.Option("--bootstrap", envvar="INTERFED_BOOTSTRAP", help="broker (default: start the embedded one)"),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=64, help="rows (the same ids on both sides)")] = 2048,
    guest_features: Annotated[int, typer.Option("--guest-features", min=1, help="the guest's features")] = 10,
    host_features: Annotated[int, typer.Option("--host-features", min=1, help="the host's features")] = 20,
    batch: Annotated[int, typer.Option("--batch", min=1, help="rows per mini-batch (one round)")] = 256,
    epochs: Annotated[int, typer.Option("--epochs", min=2, help="epochs (the first is not timed)")] = 3,
    key_bits: Annotated[int, typer.Option("--key-bits", help="the arbiter's Paillier key: 1024, 2048 or 3072")] = 2048,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="accelerator worker processes per party (three share the machine)")
    ] = 1,
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, help="mesh jobs, each between two in-process runs (medians count)")
    ] = 3,
    breakdown: Annotated[bool, typer.Option("--breakdown", help="also show where each round's time goes")] = False,
) -> None:
    """A hetero LR round through the mesh (three nodes, their accelerator workers) against the same round in-process."""
    from bench.mesh import MeshOptions, run_bench
    from bench.vertical import machine
    from mesh.brokers import TansuBroker
    from mesh.settings import load_settings

    if key_bits not in {1024, 2048, 3072}:
        raise typer.BadParameter(f"--key-bits is 1024, 2048 or 3072 (the component's choices), not {key_bits}")
    opts = MeshOptions(rows, guest_features, host_features, batch, epochs, key_bits, workers)
    settings = load_settings(bootstrap=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    before = machine()
    with contextlib.ExitStack() as stack:
        root = _scratch(stack, "interfed-bench-mesh-")
        progress = stack.enter_context(_progress(bar=False))
        task = progress.add_task("starting the embedded broker" if bootstrap is None else "starting", total=None)
        address = settings.bootstrap or stack.enter_context(TansuBroker(root / "broker")).bootstrap

        def show(what: str) -> None:
            progress.update(task, description=what)

        runs = asyncio.run(run_bench(root, settings, address, opts, repeat, show, Console(stderr=True)))
    _print_mesh(runs, opts, breakdown=breakdown)
    broker = "external " + address if settings.bootstrap else "embedded tansu"
    out.print(f"broker={broker}, accelerator workers per party={workers}, before={before}, after={machine()}")


def _print_mesh(runs: Runs, opts: MeshOptions, *, breakdown: bool) -> None:
    """The comparison (after checking every run trained the same model), and with ``breakdown`` where time goes."""
    from bench.mesh import RATIO_AIM, TOLERANCE, same_model

    reference = runs.local[0].results
    checked = [same_model(run.results, reference) for run in [*runs.mesh, *runs.local[1:]]]
    worst, digests = max(w for w, _ in checked), all(d for _, d in checked)
    ratio, bracketed = runs.ratio, runs.bracketed()
    rows, cpu = [], {}
    for path in ("mesh", "in-process"):
        seconds = runs.per_round(path)
        used = [c for r in (runs.mesh if path == "mesh" else runs.local) if (c := r.cpu_per_round) is not None]
        cpu[path] = statistics.median(used) if used else None
        rows.append(
            (
                path,
                f"{len(seconds)}x{runs.typical(path).timed.rounds}",
                f"{statistics.median(seconds):.3f}",
                f"{min(seconds):.3f}-{max(seconds):.3f}",
                f"{ratio:.2f}x {_tick(ratio <= RATIO_AIM)}" if path == "mesh" else "",
                f"{min(bracketed):.2f}-{max(bracketed):.2f}x" if path == "mesh" else "",
                "n/a (no /proc)" if cpu[path] is None else f"{cpu[path]:.3f}",
            )
        )
    _table(
        f"hetero LR round, {opts.rows} rows (guest {opts.guest_features} + host {opts.host_features} features), "
        f"batch {opts.batch}, {opts.epochs} epochs, {opts.key_bits}-bit key; aim: mesh <= {RATIO_AIM:g}x in-process",
        ("path", "runs", "s/round", "range", "ratio", "each run", "CPU s/round"),
        rows,
        left=("path",),
    )
    out.print(
        "runs: jobs x rounds timed (after the first epoch); s/round: the median; each run: each mesh run over the "
        "mean of the in-process runs before and after it; ratio: the median of those; CPU: of this process and its "
        "children (accelerator workers, an embedded broker; the idle federation's during the in-process runs too)"
        + (f", mesh / in-process {cpu['mesh'] / cpu['in-process']:.2f}x" if cpu["mesh"] and cpu["in-process"] else "")
        + ". First epoch "
        f"(start-up, keys): mesh {runs.typical('mesh').first_epoch:.1f} s, "
        f"in-process {runs.typical('in-process').first_epoch:.1f} s. Same model in every run: guest and host "
        f"weights within {TOLERANCE:g} (largest difference {worst:.2g}), "
        f"model digests {'equal' if digests else 'not all equal'}."
    )
    if not breakdown:
        return
    for path in ("mesh", "in-process"):
        run = runs.typical(path)
        _table(
            f"where a round's time goes, {path} (its median run, {run.timed.per_round:.3f} s a round): per round",
            ("party", "in", "op / tag", "calls", "s", "share"),
            [
                (
                    share.party,
                    share.kind,
                    share.name,
                    f"{share.calls:.1f}" if share.kind != "other" else "",
                    f"{share.seconds:.3f}",
                    f"{share.seconds / run.timed.per_round:.0%}",
                )
                for share in run.shares()
            ],
            left=("party", "in", "op / tag"),
        )
    travelled = runs.typical("in-process").hops()
    _table(
        "a message's hop: sender starts sending -> the waiting receiver has it (median s; count)",
        ("tag", "mesh", "in-process"),
        [
            (tag, f"{hop.median:.3f} ({hop.count})", f"{other.median:.3f} ({other.count})" if other else "")
            for tag, hop in runs.typical("mesh").hops().items()
            for other in (travelled.get(tag),)
        ],
        left=("tag",),
    )
