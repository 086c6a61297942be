"""Fixtures of the broker tests: one genuine, audited federation history that several tests copy or query."""

from __future__ import annotations

import asyncio

import pytest

from services.testbed import AuditedHistory, audited_history


@pytest.fixture(scope="session")
def history(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AuditedHistory:
    """Built once, outside any test's event loop; tests only read its topics or copy them."""
    return asyncio.run(audited_history(tmp_path_factory.mktemp("history"), bootstrap))
