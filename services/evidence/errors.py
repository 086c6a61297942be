"""Errors of the evidence service, each carrying its reason code (docs/protocol.md §13.5)."""

from __future__ import annotations

from mesh.errors import RejectedEventError


class SplitViewError(RejectedEventError):
    """A tree head (or countersignature) shows a history other than the one this party witnessed."""

    reason = "SPLIT_VIEW"


class HistoryRewrittenError(RejectedEventError):
    """The evidence topic no longer holds, at some position, the leaf this party's stored log holds there."""

    reason = "HISTORY_REWRITTEN"
