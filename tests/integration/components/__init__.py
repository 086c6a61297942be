"""Test components for executor broker tests, served by FolderSource (a test double of the component store)."""

from __future__ import annotations

from services.executor.testing import FEDMEAN, FolderSource


def fedmean_source() -> FolderSource:
    return FolderSource(FEDMEAN)
