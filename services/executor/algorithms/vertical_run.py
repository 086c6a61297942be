"""PSI then hetero LR for given parties' datasets, in one process: the figures the vertical demo prints.

``run_vertical`` aligns the guest's and hosts' datasets by the PSI component, trains the
hetero LR component on the intersection, trains the centralised reference on the same rows
with the same schedule, and returns AUC of both, rounds, bytes sent and time per stage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accel.client import AccelClient
from services.executor.algorithms.hetero_lr.component import HeteroLR, load_aligned
from services.executor.algorithms.hetero_lr.maths import Schedule, centralised, with_intercept
from services.executor.algorithms.local_run import Party, Traffic, run_local
from services.executor.algorithms.psi.component import PSI
from services.executor.api import LocalDataset

PSI_DEFAULTS: dict[str, Any] = {"result_to": "all", "batch_size": 8192, "truncate_bits": 128, "workers": 1}
LR_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.15,
    "alpha": 0.01,
    "max_epochs": 10,
    "batch_size": 64,
    "tol": 1e-4,
    "key_bits": 2048,
    "fast_encrypt": True,
    "pack_gradients": True,
}


@dataclass(frozen=True)
class VerticalSummary:
    """The figures of one PSI + hetero LR run."""

    intersection: int
    auc_federated: float
    auc_centralised: float
    epochs: int
    epochs_centralised: int
    rounds: int
    psi_bytes: int
    lr_bytes: int
    psi_seconds: float
    lr_seconds: float
    centralised_seconds: float
    loss: float

    def rows(self) -> list[tuple[str, str]]:
        """(figure, value) for a summary table."""
        return [
            ("intersection (rows)", str(self.intersection)),
            ("AUC federated", f"{self.auc_federated:.4f}"),
            ("AUC centralised", f"{self.auc_centralised:.4f}"),
            ("epochs / rounds", f"{self.epochs} / {self.rounds}"),
            ("bytes sent: PSI", f"{self.psi_bytes:,}"),
            ("bytes sent: hetero LR", f"{self.lr_bytes:,}"),
            ("time: PSI", f"{self.psi_seconds:.2f} s"),
            ("time: hetero LR", f"{self.lr_seconds:.2f} s"),
        ]


@dataclass(frozen=True)
class Comparison:
    """The federated model's AUC and the centralised reference's, on the same aligned rows."""

    rows: int
    auc_federated: float
    auc_centralised: float
    epochs_centralised: int
    seconds: float  # training the reference


def compare(  # noqa: PLR0917  # the guest's inputs and model, the hosts', then the schedule
    guest_inputs: Mapping[str, LocalDataset],
    host_inputs: Mapping[str, Mapping[str, LocalDataset]],
    guest_model: Mapping[str, Any],
    host_models: Mapping[str, Mapping[str, Any]],
    lr_params: Mapping[str, Any],
    seed: int,
) -> Comparison:
    """Score the parties' parts together on the intersection (the guest's weights and intercept, each host's
    weights), and train the centralised reference on the same rows with the same hyperparameters and schedule."""
    from sklearn.metrics import roc_auc_score  # heavy: loaded when a comparison is made, not by every command

    x_guest, labels, _ = load_aligned(guest_inputs)
    if labels is None:
        raise ValueError("the guest's training dataset has no label column")
    aligned = {n: load_aligned(host_inputs[n])[0] for n in host_inputs}
    score = x_guest @ guest_model["weights"] + guest_model["intercept"][0]
    for n, x in aligned.items():
        score = score + x @ host_models[n]["weights"]
    started = time.perf_counter()
    x_all = with_intercept(np.hstack([*aligned.values(), x_guest]))
    reference = centralised(x_all, labels, Schedule.of(lr_params, seed))
    return Comparison(
        rows=len(labels),
        auc_federated=float(roc_auc_score(labels, score)),
        auc_centralised=float(roc_auc_score(labels, x_all @ reference.weights)),
        epochs_centralised=len(reference.losses),
        seconds=time.perf_counter() - started,
    )


def _write_ids(path: Path, ids: Sequence[str]) -> LocalDataset:
    path.write_text("id\n" + "".join(f"{i}\n" for i in ids))
    return LocalDataset(path.stem, path, {"id": "id"})


async def run_vertical(
    guest: LocalDataset,
    hosts: Mapping[str, LocalDataset],
    workdir: Path,
    *,
    accel: Mapping[str, AccelClient] | None = None,
    psi_params: Mapping[str, Any] | None = None,
    lr_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> VerticalSummary:
    """PSI, hetero LR and the centralised reference for the guest ("guest") and ``hosts`` (node id -> dataset).

    ``accel`` gives a node's AccelClient (default: in-process ones); ``workdir`` receives each
    party's intersection file. Both trainings run with ``lr_params`` over ``LR_DEFAULTS``.
    """
    clients = dict(accel or {})

    def client(node: str) -> AccelClient:
        return clients.get(node) or AccelClient.in_process(node)

    psi = {**PSI_DEFAULTS, **(psi_params or {})}
    lr = {**LR_DEFAULTS, **(lr_params or {})}
    datasets = {"guest": guest, **hosts}
    traffic = Traffic()
    started = time.perf_counter()
    parties = [Party(n, "guest" if n == "guest" else "host", {"data": d}, client(n), psi) for n, d in datasets.items()]
    found = await run_local(PSI(), parties, seed=seed, traffic=traffic)
    psi_seconds, psi_bytes = time.perf_counter() - started, traffic.total
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a local folder, made once)
    inputs = {
        n: {"train": d, "intersection": _write_ids(workdir / f"intersection-{n}.csv", list(found[n].model["ids"]))}
        for n, d in datasets.items()
    }
    traffic = Traffic()
    started = time.perf_counter()
    learners = [Party(n, "guest" if n == "guest" else "host", inputs[n], client(n), lr) for n in datasets]
    trained = await run_local(
        HeteroLR(), [*learners, Party("arbiter", "arbiter", {}, client("arbiter"), lr)], seed=seed, traffic=traffic
    )
    lr_seconds = time.perf_counter() - started
    compared = compare(
        inputs["guest"],
        {n: inputs[n] for n in hosts},
        trained["guest"].model,
        {n: trained[n].model for n in hosts},
        lr,
        seed,
    )
    return VerticalSummary(
        intersection=compared.rows,
        auc_federated=compared.auc_federated,
        auc_centralised=compared.auc_centralised,
        epochs=int(trained["guest"].metrics["epochs"]),
        epochs_centralised=compared.epochs_centralised,
        rounds=int(trained["guest"].metrics["rounds"]),
        psi_bytes=psi_bytes,
        lr_bytes=traffic.total,
        psi_seconds=psi_seconds,
        lr_seconds=lr_seconds,
        centralised_seconds=compared.seconds,
        loss=float(trained["arbiter"].metrics.get("loss", float("nan"))),
    )
