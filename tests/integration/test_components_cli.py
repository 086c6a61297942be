"""The components command line as parties use it: real processes against a running federation on a real broker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from mesh.service import Context, Service
from mesh.testing import eventually, fresh_settings
from services.components.service import ComponentsService
from services.testbed import federation
from tests.integration.test_catalog_cli import interfed

pytestmark = [pytest.mark.timeout(240)]


def services(ctx: Context) -> Sequence[Service]:
    # party1 installs only by hand, so the CLI's install has something to do
    return [ComponentsService(ctx, auto_install=ctx.config.node_id != "party1")]


@pytest.mark.broker
@pytest.mark.reference_lane
async def test_publish_builtin_list_inspect_install_disable_through_the_cli(bootstrap: str, home_root: Path) -> None:
    settings = fresh_settings(heartbeat_interval=10.0, unreachable_after=30.0)
    async with federation(home_root, bootstrap, n=2, services=services, settings=settings) as fed:
        publisher, manual = (str(m.home.path) for m in fed.members)
        published = await interfed(fed, "components", "publish-builtin", "--home", publisher)
        assert "published stats:1.0.0" in published.stdout
        again = await interfed(fed, "components", "publish-builtin", "--home", publisher)
        assert "published already" in again.stdout

        store = fed.member("party0").service("components")
        assert isinstance(store, ComponentsService)
        await eventually(lambda: store.installed("stats", "1.0.0") is not None, what="party0 installing")
        listed = json.loads((await interfed(fed, "components", "list", "--home", manual, "--json")).stdout)
        stats = next(r for r in listed if r["ref"] == "stats:1.0.0")
        assert (stats["publisher"], stats["installed_here"], stats["roles"]) == (
            "party0",
            False,
            ["host", "aggregator"],
        )

        inspected = json.loads(
            (await interfed(fed, "components", "inspect", "stats", "--home", manual, "--json")).stdout
        )
        assert inspected["spec"]["parameters"][0]["name"] == "ddof"
        table = (await interfed(fed, "components", "inspect", "stats:1.0.0", "--home", manual)).stdout
        assert "component:FederatedStats" in table
        assert "[0,1]" in table

        installed = await interfed(fed, "components", "install", "stats:1.0.0", "--home", manual)
        assert "installed stats:1.0.0" in installed.stdout
        assert (Path(manual) / "components" / "stats" / "1.0.0" / "files" / "component.py").is_file()
        await interfed(fed, "components", "disable", "stats:1.0.0", "--home", manual, "--reason", "review")
        listed = json.loads((await interfed(fed, "components", "list", "--home", publisher, "--json")).stdout)
        stats = next(r for r in listed if r["ref"] == "stats:1.0.0")
        assert stats["installations"]["party1"] is False
        assert stats["installations"]["party0"] is True

        bad = await interfed(fed, "components", "install", "nosuch:1.0.0", "--home", manual, code=5)
        assert bad.stderr.count("\n") == 1
        assert "no component nosuch:1.0.0" in bad.stderr
