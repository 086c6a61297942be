"""The vertical stage of the main job: a PSI job, then a hetero LR job on its intersection, through the executors.

The bank (guest: the label and 10 features of scikit-learn's breast-cancer data) and the hospital
(host: the other 20 features) each publish their table in the catalog; the bank asks for the
hospital's for the project (two uses: one per job) and the hospital grants it. The PSI job aligns
the two tables' ids; the hetero LR job names, as each party's ``intersection`` input, that party's
own PSI output (protocol.md §16.4, job inputs), and trains with telecom as the arbiter (it holds the
Paillier key, made and kept by telecom's own accelerator, which also decrypts). Each party's
Paillier work runs on its own accelerator's worker process, as `interfed node up` runs it. The model,
each party's own part, is released by its digest once all three approve; the demo then scores the
parts together on the intersection against the centralised reference trained with the same
hyperparameters on the same rows, and against a plain scikit-learn ``LogisticRegression`` fitted on
those rows. Every AUC is taken on the rows the models trained
on (the whole intersection: no row is held out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from demos.jobs import Step, _cat, _ex, _store, accepted, grant, release, uses_recorded, watch
from services.executor.algorithms.hetero_lr.component import load_aligned
from services.executor.algorithms.vertical_data import vertical_split
from services.executor.algorithms.vertical_run import LR_DEFAULTS, PSI_DEFAULTS, Comparison, compare
from services.executor.api import LocalDataset
from services.executor.state import Job
from services.testbed import TestFederation

PROJECT = "vfl-demo"
PSI_COMPONENT = ("psi", "1.0.0")
LR_COMPONENT = ("hetero_lr", "1.1.0")
#: The demo's hetero LR parameters: the spec's defaults (2048-bit key, learning rate 0.15, tol 1e-4) but for the
#: batch, 128 rows (3 rounds an epoch), and the epoch cap, 100: training stops by ``tol``, after 14 epochs on the
#: demo's data; the cap only bounds a run that does not converge, which the demo then fails.
LR_PARAMS: dict[str, Any] = {**LR_DEFAULTS, "max_epochs": 100, "batch_size": 128}
#: How far the federated AUC may fall below scikit-learn's on the same rows (issue 14's aim).
SKLEARN_GAP = 0.005
SEED = 2026


@dataclass(frozen=True)
class VerticalFigures:
    """What the summary table shows of the vertical stage."""

    compared: Comparison
    sklearn_auc: float  # scikit-learn's LogisticRegression on the same rows
    epochs: int
    rounds: int
    psi_bytes: int
    lr_bytes: int
    psi_seconds: float
    lr_seconds: float
    parts: dict[str, str]  # node -> its model part's digest (hex)
    release: str  # the release digest (hex)

    def rows(self) -> list[tuple[str, str]]:
        c = self.compared
        return [
            ("intersection (rows)", str(c.rows)),
            ("AUC federated | centralised", f"{c.auc_federated:.4f} | {c.auc_centralised:.4f}"),
            ("AUC difference (tolerance 0.005)", f"{abs(c.auc_federated - c.auc_centralised):.4f}"),
            ("AUC scikit-learn LogisticRegression (defaults)", f"{self.sklearn_auc:.4f}"),
            (f"AUC federated below scikit-learn (aim <= {SKLEARN_GAP})", f"{self.sklearn_auc - c.auc_federated:.4f}"),
            ("AUC rows (all three)", f"the {c.rows} intersection rows they trained on, none held out"),
            (
                "hetero LR epochs / rounds",
                f"{self.epochs} / {self.rounds}, stopped by tol (reference: {c.epochs_centralised} epochs)",
            ),
            (
                "hetero LR parameters",
                f"key {LR_PARAMS['key_bits']} bits, batch {LR_PARAMS['batch_size']}, "
                f"learning rate {LR_PARAMS['learning_rate']}, alpha {LR_PARAMS['alpha']}, tol {LR_PARAMS['tol']}, "
                f"max {LR_PARAMS['max_epochs']} epochs",
            ),
            ("round bytes sent: PSI", f"{self.psi_bytes:,}"),
            ("round bytes sent: hetero LR", f"{self.lr_bytes:,}"),
            ("job time: PSI | hetero LR", f"{self.psi_seconds:.1f} s | {self.lr_seconds:.1f} s"),
            ("released model (parts digest)", self.release[:16]),
        ]


def _tables(root: Path) -> tuple[Path, Path]:
    """The bank's and the hospital's halves of breast cancer, 20 % of each side's ids absent from the other."""
    from sklearn.datasets import load_breast_cancer  # heavy: only when the demo trains

    x, y = load_breast_cancer(return_X_y=True)
    for party in ("bank", "hospital"):
        (root / "data" / party).mkdir(parents=True, exist_ok=True)
    guest, host = vertical_split(
        root / "data", x, y.astype(np.float64), [range(10), range(10, 30)], names=("bank/vfl", "hospital/vfl")
    )
    return guest.path, host.path


def sklearn_auc(
    guest_inputs: Mapping[str, LocalDataset], host_inputs: Mapping[str, Mapping[str, LocalDataset]]
) -> float:
    """AUC of scikit-learn's ``LogisticRegression`` with its defaults (L2, C=1, lbfgs, an intercept), fitted on the
    parties' aligned, standardised columns (what the federated model trains on) and scored on the same rows."""
    from sklearn.linear_model import LogisticRegression  # heavy: only when the demo compares
    from sklearn.metrics import roc_auc_score

    x_guest, labels, _ = load_aligned(guest_inputs)
    if labels is None:
        raise ValueError("the guest's training dataset has no label column")
    x = np.hstack([*(load_aligned(inputs)[0] for inputs in host_inputs.values()), x_guest])
    model = LogisticRegression().fit(x, labels)
    return float(roc_auc_score(labels, model.decision_function(x)))


def _sent(job: Job) -> int:
    """Round bytes every participant reported having sent in the job (its PartyFinished metrics)."""
    return sum(int(json.loads(f["metrics_json"]).get("bytes_sent", 0)) for f in job.finished.values())


async def vertical(fed: TestFederation, root: Path, step: Step, out: Console) -> VerticalFigures:
    """Datasets and permit, the PSI job, the hetero LR job on its output, the release; the figures."""
    bank = _ex(fed, "bank")
    with step("the bank and every party have psi and hetero_lr installed from the bank's built-ins, one digest each"):
        for code, version in (PSI_COMPONENT, LR_COMPONENT):
            found = {_store(fed, m.node_id).runnable(code, version).artifact_sha256 for m in fed.everyone}
            if len(found) != 1:
                raise AssertionError(f"the parties hold different {code} artifacts")
    guest_path, host_path = _tables(root)
    with step("bank and hospital publish their vertical halves; the bank asks for the hospital's (2 uses); granted"):
        guest = await _cat(fed, "bank").publish(
            guest_path, "vfl-guest", category=PROJECT, id_columns=("id",), label_columns=("label",)
        )
        host, permit = await grant(fed, "hospital", host_path, "vfl-host", labels=(), project=PROJECT, uses=2)
    started = time.perf_counter()
    with step("the bank proposes a PSI job (bank guest, hospital host); both check and accept it by policy"):
        psi_id = await bank.propose(
            component=PSI_COMPONENT,
            participants=[("bank", "guest"), ("hospital", "host")],
            datasets=[("bank", "data", guest, None), ("hospital", "data", host, permit)],
            params=dict(PSI_DEFAULTS),
            project=PROJECT,
            round_deadline=60,
            seed=SEED,
        )
        psi = await accepted(fed, psi_id)
    with step("the PSI job runs: blinded ids in batches on the broker; each party stores its intersection"):
        await watch(fed, psi, "hospital", 1, out)
    psi_seconds, started = time.perf_counter() - started, time.perf_counter()
    inputs = [("bank", "intersection", psi_id, "intersection"), ("hospital", "intersection", psi_id, "intersection")]
    with step("the bank proposes hetero LR on the PSI output (telecom arbiter); each checks its input and accepts"):
        lr_id = await bank.propose(
            component=LR_COMPONENT,
            participants=[("bank", "guest"), ("hospital", "host"), ("telecom", "arbiter")],
            datasets=[("bank", "train", guest, None), ("hospital", "train", host, permit)],
            job_inputs=inputs,
            params=LR_PARAMS,
            project=PROJECT,
            round_deadline=120,
            seed=SEED,
        )
        lr = await accepted(fed, lr_id)
    with step("hetero LR runs: encrypted residuals and masked gradients on the broker, Paillier via the accelerators"):
        await watch(fed, lr, "telecom", int(LR_PARAMS["max_epochs"]), out, budget=600)
    lr_seconds = time.perf_counter() - started
    with step("the parties approve the release of the model's parts by their digest; the bank records it"):
        digest = await release(fed, lr_id)
    with step("the hospital's table was used once per job under its permit; no party refused a job event"):
        await uses_recorded(fed, {permit: 2})
    results = {n: _ex(fed, n).results[lr_id] for n in ("bank", "hospital")}
    trained = _ex(fed, "bank").jobs.jobs[lr_id]
    metrics = results["bank"].metrics
    with step(f"hetero LR stopped on its own: the loss changed by less than tol {LR_PARAMS['tol']} within the cap"):
        if int(metrics["epochs"]) >= int(LR_PARAMS["max_epochs"]):
            raise AssertionError(
                f"hetero LR did not converge: all {LR_PARAMS['max_epochs']} epochs ran and the loss still changed "
                f"by tol {LR_PARAMS['tol']} or more"
            )
    with step(
        "score the parts together on the intersection; train the centralised reference the same way "
        "and scikit-learn's LogisticRegression on the same rows"
    ):
        ctx_inputs = {n: _ex(fed, n).inputs_of(trained) for n in ("bank", "hospital")}
        compared = compare(
            ctx_inputs["bank"],
            {"hospital": ctx_inputs["hospital"]},
            results["bank"].model,
            {"hospital": results["hospital"].model},
            LR_PARAMS,
            SEED,
        )
        if abs(compared.auc_federated - compared.auc_centralised) > 0.005:
            raise AssertionError(
                f"AUC federated {compared.auc_federated:.4f} and centralised {compared.auc_centralised:.4f} "
                "differ by more than 0.005"
            )
        baseline = sklearn_auc(ctx_inputs["bank"], {"hospital": ctx_inputs["hospital"]})
        if baseline - compared.auc_federated > SKLEARN_GAP:
            raise AssertionError(
                f"AUC federated {compared.auc_federated:.4f} is {baseline - compared.auc_federated:.4f} below "
                f"scikit-learn's LogisticRegression {baseline:.4f} on the same {compared.rows} rows "
                f"(aim: at most {SKLEARN_GAP})"
            )
    return VerticalFigures(
        compared=compared,
        sklearn_auc=baseline,
        epochs=int(metrics["epochs"]),
        rounds=int(metrics["rounds"]),
        psi_bytes=_sent(psi),
        lr_bytes=_sent(trained),
        psi_seconds=psi_seconds,
        lr_seconds=lr_seconds,
        parts={n: bytes(f["model_sha256"]).hex() for n, f in trained.finished.items() if f["model_sha256"]},
        release=digest.hex(),
    )
