"""The pure parts of ``interfed bench mesh``: seconds per round from epoch reports, the breakdown of a round,
the instruments on a real (small) in-process run, and the check that two runs trained the same model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from accel.client import AccelClient
from bench.mesh import (
    ROLES,
    TIMED,
    MeshOptions,
    ModelMismatchError,
    PathRun,
    Runs,
    bracketed_ratios,
    run_in_process,
    same_model,
    tables,
)
from bench.round_timing import Recorder, Span, Window, breakdown, hops, instrumented, tree_cpu, window
from services.executor.api import ComponentResult, LocalChannel


def test_window_counts_the_rounds_after_the_first_report() -> None:
    """Start-up and the first epoch are left out: 3 epoch reports at 8 rounds an epoch time 16 rounds."""
    timed = window([(0, 10.0), (1, 13.0), (2, 16.5)], 8)
    assert (timed.start, timed.end, timed.rounds) == (10.0, 16.5, 16)
    assert timed.per_round == pytest.approx(6.5 / 16)


def test_window_from_a_resumed_run_counts_from_its_first_report() -> None:
    assert window([(3, 1.0), (5, 2.0)], 4).rounds == 8


@pytest.mark.parametrize("reports", [[], [(0, 1.0)], [(1, 1.0), (1, 2.0)], [(0, 2.0), (1, 1.0)]])
def test_window_refuses_what_times_no_round(reports: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError, match="epoch"):
        window(reports, 8)


def test_breakdown_clips_spans_to_the_window_and_shares_it_per_round() -> None:
    timed = Window(10.0, 20.0, 4)  # 2.5 s a round
    spans = [
        Span("g", "accel", "MATMUL", 9.0, 11.0),  # starts before: 1 s counted, not its call
        Span("g", "accel", "MATMUL", 12.0, 14.0),
        Span("g", "gather", "hlr.u", 14.0, 19.0),
        Span("g", "send", "hlr.d", 19.5, 21.0),  # ends after: 0.5 s counted, its call too
        Span("h", "accel", "ENCRYPT", 1.0, 2.0),  # outside: not counted
        Span("h", "accel", "ENCRYPT", 15.0, 17.0),
    ]
    shares = {(s.party, s.kind, s.name): s for s in breakdown(spans, timed)}
    assert shares["g", "accel", "MATMUL"].seconds == pytest.approx(3.0 / 4)
    assert shares["g", "accel", "MATMUL"].calls == pytest.approx(1 / 4)
    assert shares["g", "gather", "hlr.u"].seconds == pytest.approx(5.0 / 4)
    assert shares["g", "send", "hlr.d"].seconds == pytest.approx(0.5 / 4)
    assert shares["g", "send", "hlr.d"].calls == pytest.approx(1 / 4)
    assert shares["g", "other", "(not in a call)"].seconds == pytest.approx((10.0 - 8.5) / 4)
    assert shares["h", "accel", "ENCRYPT"].seconds == pytest.approx(2.0 / 4)
    assert shares["h", "accel", "ENCRYPT"].calls == pytest.approx(1 / 4)
    assert shares["h", "other", "(not in a call)"].seconds == pytest.approx(8.0 / 4)
    order = [s.party for s in breakdown(spans, timed)]
    assert order == sorted(order)


def test_other_is_the_time_in_no_call_when_calls_run_side_by_side() -> None:
    timed = Window(0.0, 10.0, 2)
    spans = [
        Span("g", "accel", "MATMUL", 1.0, 5.0),
        Span("g", "accel", "DOT", 2.0, 4.0),  # inside the MATMUL
        Span("g", "send", "hlr.grad", 4.5, 6.0),  # overlaps its end
        Span("g", "gather", "hlr.u", 8.0, 12.0),  # clipped at the window's end
    ]
    shares = {(s.kind, s.name): s.seconds for s in breakdown(spans, timed)}
    assert shares["accel", "MATMUL"] + shares["accel", "DOT"] + shares["send", "hlr.grad"] == pytest.approx(7.5 / 2)
    assert shares["other", "(not in a call)"] == pytest.approx((10.0 - 5.0 - 2.0) / 2)  # busy 1-6 and 8-10


def test_hops_time_messages_whose_receiver_was_waiting() -> None:
    """A hop runs from the send's start to the gather's end; a gather from a role finds its node; a message that
    was there before its receiver asked, or a gather outside the window, is not a hop."""
    timed = Window(10.0, 30.0, 2)
    roles = {"bank": "guest", "hospital": "host"}
    spans = [
        Span("hospital", "gather", "hlr.d", 10.5, 12.0, 0, "guest"),
        Span("bank", "send", "hlr.d", 11.0, 11.2, 0, "host"),  # hop 1.0
        Span("hospital", "gather", "hlr.d", 20.0, 23.0, 1, "guest"),
        Span("bank", "send", "hlr.d", 21.0, 21.5, 1, "host"),  # hop 2.0
        Span("bank", "send", "hlr.d", 25.0, 25.1, 2, "host"),
        Span("hospital", "gather", "hlr.d", 26.0, 26.0, 2, "guest"),  # already there: no hop
        Span("bank", "send", "hlr.u", 1.0, 1.5, 0, "hospital"),
        Span("hospital", "gather", "hlr.u", 0.5, 2.0, 0, "bank"),  # before the window
        Span("bank", "send", "hlr.u", 14.0, 14.5, 1, "hospital"),
        Span("hospital", "gather", "hlr.u", 13.0, 14.75, 1, "bank"),  # by node: hop 0.75
    ]
    spans += [  # the arbiter's answers to each learner: the same tag and round, told apart by the receiver
        Span("hospital", "gather", "hlr.grad.plain", 15.0, 16.0, 1, "arbiter"),
        Span("bank", "gather", "hlr.grad.plain", 15.0, 17.5, 1, "arbiter"),
        Span("telecom", "send", "hlr.grad.plain", 15.5, 15.6, 1, "hospital"),  # hop 0.5
        Span("telecom", "send", "hlr.grad.plain", 17.0, 17.1, 1, "bank"),  # hop 0.5, not 17.5 - 15.5
    ]
    roles |= {"telecom": "arbiter"}
    found = {hop.tag: hop for hop in hops(spans, timed, roles)}
    assert (found["hlr.grad.plain"].count, found["hlr.grad.plain"].median) == (2, pytest.approx(0.5))
    assert (found["hlr.d"].count, found["hlr.d"].median) == (2, pytest.approx(1.5))
    assert (found["hlr.u"].count, found["hlr.u"].median) == (1, pytest.approx(0.75))
    assert list(found) == ["hlr.d", "hlr.u", "hlr.grad.plain"]


def test_each_mesh_run_is_compared_with_the_in_process_runs_around_it() -> None:
    assert bracketed_ratios([3.0, 6.0], [1.0, 2.0, 4.0]) == [2.0, 2.0]
    with pytest.raises(ValueError, match="in-process runs around them"):
        bracketed_ratios([3.0, 6.0], [1.0, 2.0])


def _run(path: str, per_round: float) -> PathRun:
    return PathRun(path, Window(0.0, per_round * 8, 8), -1.0, per_round * 8, {}, Recorder())


def test_runs_compare_the_median_runs() -> None:
    runs = Runs(
        [_run("mesh", 0.9), _run("mesh", 0.3), _run("mesh", 0.6)], [_run("in-process", s) for s in (0.2, 0.4, 0.3, 1.0)]
    )
    assert runs.typical("mesh").timed.per_round == pytest.approx(0.6)
    assert runs.typical("in-process").timed.per_round == pytest.approx(0.3)  # the lower middle of four
    assert runs.bracketed() == pytest.approx([0.9 / 0.3, 0.3 / 0.35, 0.6 / 0.65])
    assert runs.ratio == pytest.approx(0.6 / 0.65)  # the median of the runs' own ratios
    assert runs.per_round("in-process") == pytest.approx([0.2, 0.4, 0.3, 1.0])
    assert runs.typical("mesh").first_epoch == pytest.approx(1.0)


def test_tree_cpu_counts_a_busy_child(tmp_path: Path) -> None:
    """A child process's CPU seconds are in the tree's (a bench's accelerator workers and broker are children)."""
    import subprocess
    import sys

    before = tree_cpu()
    if before is None:
        pytest.skip("no /proc on this system")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while (now := tree_cpu()) is not None and now - before < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert now is not None
        assert now - before >= 0.25
    finally:
        child.kill()
        child.wait()


def test_options_count_a_short_last_batch_as_a_round() -> None:
    assert MeshOptions(rows=2048, batch=256).rounds_per_epoch == 8
    assert MeshOptions(rows=100, batch=30).rounds_per_epoch == 4
    assert MeshOptions(epochs=5).params()["tol"] == 0.0


async def test_the_instruments_time_a_real_run_and_are_removed_after(tmp_path: Path) -> None:
    """A small hetero LR run in-process: every party's reports, accelerator calls, sends and gathers are recorded;
    once out of ``instrumented`` nothing is patched any more."""
    opts = MeshOptions(rows=96, guest_features=3, host_features=4, batch=32, epochs=2, key_bits=1024)
    guest, host = tables(tmp_path, opts)
    inputs = {"bank": {"train": guest}, "hospital": {"train": host}}
    request, gather = AccelClient.request, LocalChannel.gather
    run = await run_in_process(inputs, opts)
    assert (AccelClient.request, LocalChannel.gather) == (request, gather)
    assert set(run.recorder.reports) == set(ROLES)
    assert [epoch for epoch, _ in run.recorder.reports[TIMED]] == [0, 1]
    assert len(run.recorder.cpu) == 2  # at the timed party's reports only
    assert (run.cpu_per_round or 0.0) > 0 if tree_cpu() is not None else run.cpu_per_round is None
    assert run.timed.rounds == opts.rounds_per_epoch
    kinds = {(s.party, s.kind) for s in run.recorder.spans}
    assert {("bank", "accel"), ("hospital", "send"), ("telecom", "gather")} <= kinds
    assert any(s.name == "KEYGEN" and s.party == "telecom" for s in run.recorder.spans)
    assert any(s.name == "hlr.grad" and s.kind == "gather" for s in run.shares())
    assert {"hlr.u", "hlr.d", "hlr.grad", "hlr.grad.plain"} <= set(run.hops())
    with instrumented(Recorder()) as recorder:
        await AccelClient.in_process("bank").generate_key(1024)
    assert [(s.party, s.kind, s.name) for s in recorder.spans] == [("bank", "accel", "KEYGEN")]


def _results(host_weights: list[float], rounds: float = 8.0) -> dict[str, ComponentResult]:
    metrics = {"epochs": 2.0, "rounds": rounds}
    return {
        "bank": ComponentResult({"weights": np.array([0.5, -0.25]), "intercept": np.array([0.125])}, metrics),
        "hospital": ComponentResult({"weights": np.array(host_weights)}, metrics),
        "telecom": ComponentResult({}, metrics),
    }


def test_same_model_passes_equal_runs_and_names_digest_equality() -> None:
    assert same_model(_results([1.0, 2.0]), _results([1.0, 2.0])) == (0.0, True)
    worst, digests = same_model(_results([1.0, 2.0]), _results([1.0, 2.0 + 1e-12]))
    assert worst == pytest.approx(1e-12, rel=0.01)
    assert not digests


@pytest.mark.parametrize(
    ("other", "reason"),
    [
        (_results([1.0, 2.0 + 1e-6]), "differ by up to"),
        (_results([1.0, 2.0, 3.0]), "shape"),
        (_results([1.0, 2.0], rounds=9.0), "rounds"),
        ({k: v for k, v in _results([1.0, 2.0]).items() if k != "hospital"}, "one run only"),
    ],
)
def test_same_model_fails_loudly_on_another_model(other: dict[str, ComponentResult], reason: str) -> None:
    with pytest.raises(ModelMismatchError, match=reason):
        same_model(_results([1.0, 2.0]), other)
