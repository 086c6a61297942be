"""The catalog command line as parties use it: real processes against a running federation on a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from mesh.service import Context, Service
from mesh.testing import fresh_settings
from services.catalog.service import CatalogService
from services.testbed import TestFederation, federation

pytestmark = [pytest.mark.timeout(240)]


async def interfed(fed: TestFederation, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """Run one command in its own process while the federation's services keep running here."""
    env = {
        **os.environ,
        "INTERFED_BOOTSTRAP": fed.bootstrap,
        "INTERFED_TOPIC_PREFIX": fed.settings.topic_prefix,
        "COLUMNS": "220",
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "interfed", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != code:
        raise AssertionError(
            f"interfed {' '.join(args)} exited {proc.returncode}, not {code}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def services(ctx: Context) -> Sequence[Service]:
    return [CatalogService(ctx)]


@pytest.mark.broker
@pytest.mark.reference_lane
async def test_publish_list_request_approve_use_through_the_cli(
    bootstrap: str, home_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "Loans 2026.csv"
    data.write_text("id,income,defaulted\n" + "".join(f"{i},{i * 10.5},{i % 2}\n" for i in range(25)), encoding="utf-8")
    # Slow beats: every command replays the heartbeats topic, which tansu never compacts, and it reads
    # many small records slowly (about a minute for a thousand under load), so keep that topic short.
    settings = fresh_settings(heartbeat_interval=10.0, unreachable_after=30.0)
    async with federation(home_root, bootstrap, n=2, services=services, settings=settings) as fed:
        owner, user = (str(m.home.path) for m in fed.members)
        published = await interfed(
            fed, "catalog", "publish", str(data), "--home", owner, "--label", "defaulted", "--stats"
        )
        assert "party0/loans-2026" in published.stdout
        listed = json.loads((await interfed(fed, "catalog", "list", "--home", user, "--json")).stdout)
        assert [(r["dataset_id"], r["rows"], r["owner"]) for r in listed] == [("party0/loans-2026", 25, "party0")]
        assert listed[0]["columns"][1]["stats"]["max"] == 252.0
        table = (await interfed(fed, "catalog", "list", "--home", user, "--owner", "party0")).stdout
        assert "party0/loans-2026" in table
        assert "defaulted (label)" in table
        none = json.loads((await interfed(fed, "catalog", "list", "--home", user, "--category", "x", "--json")).stdout)
        assert none == []

        asked = await interfed(
            fed, "catalog", "request", "party0/loans-2026", "--home", user,
            "--purpose", "credit", "--scope", "PROJECT:p1", "--uses", "1", "--days", "1",
        )  # fmt: skip
        request_id = asked.stdout.split("requested: ")[1].split(";")[0].strip()
        await interfed(fed, "catalog", "grant", request_id, "--home", owner)
        await interfed(fed, "catalog", "use", request_id, "--home", user, "--for", "p1")
        rows = json.loads((await interfed(fed, "catalog", "permits", "--home", owner, "--json")).stdout)
        assert [(r["request_id"], r["status"], r["uses"], r["decided_by"]) for r in rows] == [
            (request_id, "EXHAUSTED", 1, "manual")
        ]

        # Refusals are one line with the reason code and their own exit code.
        again = await interfed(fed, "catalog", "use", request_id, "--home", user, "--for", "p1", code=5)
        assert again.stderr.strip().startswith("interfed: error: PERMIT_EXHAUSTED")
        assert len(again.stderr.strip().splitlines()) == 1
        stranger = await interfed(fed, "catalog", "grant", request_id, "--home", user, code=5)
        assert "UNAUTHORISED" in stranger.stderr
        bad_scope = await interfed(
            fed,
            "catalog",
            "request",
            "party0/loans-2026",
            "--home",
            user,
            "--purpose",
            "x",
            "--scope",
            "TEAM:a",
            code=2,
        )
        assert "--scope 'TEAM:a'" in bad_scope.stderr

        data.write_text(data.read_text(encoding="utf-8") + "25,262.5,1\n", encoding="utf-8")
        updated = await interfed(fed, "catalog", "update", "party0/loans-2026", "--home", owner)
        assert "to version 2" in updated.stdout
        shown = (await interfed(fed, "catalog", "show", "party0/loans-2026", "--home", user)).stdout
        assert "26 rows" in shown
        assert "CONTINUOUS" in shown
        await interfed(fed, "catalog", "retract", "party0/loans-2026", "--home", owner, "--reason", "superseded")
        assert json.loads((await interfed(fed, "catalog", "list", "--home", user, "--json")).stdout) == []
        every = json.loads((await interfed(fed, "catalog", "list", "--home", user, "--all", "--json")).stdout)
        assert [(r["status"], r["version"], r["rows"]) for r in every] == [("RETRACTED", 2, 26)]


def test_policy_check_prints_rules_and_names_a_bad_entry(tmp_path: Path) -> None:
    good = tmp_path / "policy.toml"
    good.write_text('[[rule]]\nname = "partners"\ndecision = "grant"\nrequesters = ["telecom"]\n', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\ndecision = "maybe"\n', encoding="utf-8")
    run = [sys.executable, "-m", "interfed", "catalog", "policy-check"]
    env = {**os.environ, "COLUMNS": "200"}
    shown = subprocess.run([*run, str(good)], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert "partners" in shown.stdout
    assert "telecom" in shown.stdout
    refused = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 3
    assert "rule.0.decision" in refused.stderr
