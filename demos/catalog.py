"""The catalog's part of the main job: each party publishes datasets, the bank's policy decides two requests,
and a use is recorded under the permit it granted."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from mesh.clock import now_ms
from mesh.errors import RejectedEventError
from mesh.service import Context, Service
from mesh.testing import eventually
from services.catalog.cli import dataset_rows, permit_rows, print_datasets, print_permits
from services.catalog.policy import DAY_MS
from services.catalog.service import POLICY_FILE, CatalogService
from services.catalog.state import Catalog, PermitStatus
from services.testbed import TestFederation

#: The bank's access policy, written into its home as a real node would keep it.
BANK_POLICY = """\
default = "manual"

[[rule]]
name = "no-marketing"
decision = "reject"
purposes = ["*marketing*"]
reason = "customer data is not used for marketing"

[[rule]]
name = "risk-research"
decision = "grant"
requesters = ["telecom", "hospital"]
purposes = ["*risk*"]
scope_types = ["PROJECT"]
max_uses = 10
max_days = 30
"""

Step = Callable[[str], contextlib.AbstractContextManager[None]]


def catalog_services(ctx: Context) -> Sequence[Service]:
    """Each party runs a catalog beside its registry; the bank keeps an access policy in its home."""
    if ctx.config.node_id == "bank":
        (ctx.home.path / POLICY_FILE).write_text(BANK_POLICY, encoding="utf-8")
    return [CatalogService(ctx)]


def _write_csv(path: Path, columns: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    rows = zip(*(columns[n] for n in names), strict=True)
    lines = [",".join(names)] + [",".join(_cell(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float | np.floating) else str(value)


def make_data(root: Path, rows: int = 500) -> dict[str, Path]:
    """Small synthetic datasets, one per party, from a fixed seed (the same files every run)."""
    rng = np.random.default_rng(2026)
    ids = np.arange(1, rows + 1)
    income = rng.lognormal(10.5, 0.4, rows)
    debt = rng.uniform(0, 1.2, rows)
    age = rng.integers(18, 80, rows)
    bmi = rng.normal(26, 4, rows)
    tenure = rng.integers(1, 120, rows)
    return {
        "bank": _write_csv(
            root / "bank" / "loans.csv",
            {
                "id": ids,
                "age": age,
                "income": income,
                "debt_ratio": debt,
                "region": rng.choice(["north", "south", "east", "west"], rows),
                "defaulted": (debt + rng.normal(0, 0.2, rows) > 0.9).astype(int),
            },
        ),
        "hospital": _write_csv(
            root / "hospital" / "patients.csv",
            {
                "id": ids,
                "age": age,
                "bmi": bmi,
                "systolic_bp": rng.normal(125, 15, rows),
                "smoker": rng.choice(["yes", "no"], rows, p=[0.2, 0.8]),
                "readmitted": (bmi + rng.normal(0, 3, rows) > 30).astype(int),
            },
        ),
        "telecom": _write_csv(
            root / "telecom" / "subscribers.csv",
            {
                "id": ids,
                "tenure_months": tenure,
                "monthly_charge": rng.uniform(10, 90, rows),
                "plan": rng.choice(["basic", "plus", "max"], rows),
                "churned": (tenure < 12).astype(int),
            },
        ),
    }


def _catalog(fed: TestFederation, node_id: str) -> CatalogService:
    member = fed.operator if node_id == fed.operator.node_id else fed.member(node_id)
    svc = member.service("catalog")
    assert isinstance(svc, CatalogService)
    return svc


async def _everyone_sees(fed: TestFederation, what: str, seen: Callable[[Catalog], bool]) -> None:
    for m in fed.everyone:
        catalog = _catalog(fed, m.node_id).catalog
        await eventually(partial(seen, catalog), 30, f"{m.node_id} seeing {what}")


async def share_data(fed: TestFederation, root: Path, step: Step, out: Console) -> None:
    """Publish, request, decide by policy, use; each step checked from every party's view."""
    files = make_data(root / "data")
    bank, hospital, telecom = (_catalog(fed, n) for n in ("bank", "hospital", "telecom"))
    with step("each party publishes a dataset's metadata (the rows stay on its disk)"):
        await bank.publish(files["bank"], "loans", category="credit", label_columns=("defaulted",))
        await hospital.publish(files["hospital"], "patients", category="health", label_columns=("readmitted",))
        await telecom.publish(
            files["telecom"], "subscribers", category="telecom", label_columns=("churned",), with_stats=True
        )
        await _everyone_sees(fed, "three datasets", lambda c: len(c.datasets) == 3)
    until = now_ms() + 7 * DAY_MS
    with step("telecom and hospital request the bank's loans; the bank's policy decides both"):
        granted = await telecom.request(
            "bank/loans",
            "credit risk scoring",
            scope_type="PROJECT",
            scope_ids=["risk-2027"],
            not_after=until,
            use_limit=5,
        )
        refused = await hospital.request(
            "bank/loans",
            "marketing outreach",
            scope_type="PROJECT",
            scope_ids=["campaign"],
            not_after=until,
            use_limit=1,
        )
        await _everyone_sees(
            fed,
            "both decisions",
            lambda c: all(
                r in c.permits and c.permits[r].status is not PermitStatus.REQUESTED for r in (granted, refused)
            ),
        )
        decided = (telecom.catalog.permits[granted], telecom.catalog.permits[refused])
        if [p.status for p in decided] != [PermitStatus.GRANTED, PermitStatus.REJECTED]:
            raise AssertionError(f"decisions were {[(p.status, p.decided_by) for p in decided]}")
    with step("telecom uses the loans under its permit; the use is recorded everywhere"):
        use_id = await telecom.use(granted, "risk-2027")
        await _everyone_sees(fed, "the use", lambda c: use_id in c.uses)
    with step("hospital's use without a permit is refused at the point of use"), _expect_refusal("NO_PERMIT") as seen:
        await hospital.use(refused, "campaign")
    out.print(f"  refused: {seen[0]}")
    with step("no party refused any catalog event"):
        for m in fed.everyone:
            dead = {k: v for k, v in _catalog(fed, m.node_id).counts.items() if k.startswith("dead:")}
            if dead:
                raise AssertionError(f"{m.node_id}'s catalog refused events: {dead}")
    print_datasets(dataset_rows(hospital.catalog), "datasets as hospital sees them", out)
    print_permits(permit_rows(hospital.catalog, now_ms()), "access requests as hospital sees them", out)


@contextlib.contextmanager
def _expect_refusal(reason: str) -> Iterator[list[str]]:
    seen: list[str] = []
    try:
        yield seen
    except RejectedEventError as exc:
        if exc.reason != reason:
            raise
        seen.append(f"{exc.reason}: {exc}")
        return
    raise AssertionError(f"expected a {reason} refusal; the use went through")
