"""``interfed bench cli``: how long the read commands take against a running node, from its view and replayed."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

#: The issue's aim for a local read against a running node (seconds, the median of the runs).
READ_AIM_SECONDS = 0.5

READS = (
    ("--help",),
    ("node", "status"),
    ("registry", "nodes"),
    ("catalog", "list"),
    ("catalog", "permits"),
    ("components", "list"),
    ("job", "list"),
)


def _seconds(args: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one command: the CPU time hardly depends on other load."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "interfed", *args], capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"interfed {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return took, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def run_cli_bench(home: Path, bootstrap: str, runs: int, replay: bool) -> list[dict[str, object]]:
    """Each read command ``runs`` times as its own process (as a user types it): the median and the fastest,
    from the running node's view, and with ``replay`` also replayed from the broker."""
    rows: list[dict[str, object]] = []
    for command in READS:
        local = command[0] in ("--help", "node")  # no broker: the help, and node status (HOME/run only)
        modes: list[tuple[str, list[str]]] = [("-" if local else "view", [])]
        if replay and not local:
            modes.append(("replay", ["--replay"]))
        for mode, extra in modes:
            args = [*command] if command == ("--help",) else [*command, "--home", str(home), *extra]
            if not local:
                args += ["--bootstrap", bootstrap]
            measured = [_seconds(args) for _ in range(runs)]
            times = [wall for wall, _ in measured]
            rows.append(
                {
                    "command": " ".join(command),
                    "from": mode,
                    "median_s": round(statistics.median(times), 3),
                    "min_s": round(min(times), 3),
                    "cpu_median_s": round(statistics.median(cpu for _, cpu in measured), 3),
                    "runs": runs,
                }
            )
    return rows


def bench_cli(
    home: Annotated[Path, typer.Option("--home", envvar="INTERFED_HOME", help="the home of a running node")],
    runs: Annotated[int, typer.Option(min=1, help="runs of each command (the median is reported)")] = 7,
    replay: Annotated[bool, typer.Option("--replay/--no-replay", help="also time each read replayed")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """The read commands against a running node (e.g. one of 'interfed federation up'), each run as its own
    process: median and fastest seconds, from the node's view and replayed from the broker; aim <= 0.5 s."""
    from rich.console import Console
    from rich.table import Table

    from mesh.errors import ConfigurationError
    from mesh.snapshot import live_snapshot

    snapshot, why = live_snapshot(home, None)
    if snapshot is None:
        raise ConfigurationError(f"{home}: {why}; start the node first ('interfed node up' or 'federation up')")
    rows = run_cli_bench(home, snapshot.bootstrap, runs, replay)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"read commands against {snapshot.node_id}'s running node ({runs} runs each)")
    for column in ("command", "from", "median s", "fastest s", "CPU s (median)", f"aim <= {READ_AIM_SECONDS} s"):
        table.add_column(column, justify="left" if column in ("command", "from") else "right")
    for r in rows:
        median = float(str(r["median_s"]))
        verdict = "" if r["from"] == "replay" else ("[green]✓[/]" if median <= READ_AIM_SECONDS else "[red]✗[/]")
        cells = (f"{median:.3f}", f"{r['min_s']:.3f}", f"{r['cpu_median_s']:.3f}")
        table.add_row(str(r["command"]), str(r["from"]), *cells, verdict)
    Console(highlight=False).print(table)
