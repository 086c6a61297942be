"""Errors of the catalog: the refusals a permit can meet at the point of use, and local file problems."""

from __future__ import annotations

from mesh.errors import MeshError, RejectedEventError


class NoPermitError(RejectedEventError):
    """A use under a request that does not exist, is for another dataset, or was never granted."""

    reason = "NO_PERMIT"


class PermitExpiredError(RejectedEventError):
    """A use signed after the permit's not_after."""

    reason = "PERMIT_EXPIRED"


class PermitExhaustedError(RejectedEventError):
    """A use beyond the permit's use_limit."""

    reason = "PERMIT_EXHAUSTED"


class PermitTerminatedError(RejectedEventError):
    """A use under a permit that the owner or the holder terminated."""

    reason = "PERMIT_TERMINATED"


class DatasetRetractedError(RejectedEventError):
    """A use of a dataset its owner has retracted."""

    reason = "DATASET_RETRACTED"


class OutOfScopeError(RejectedEventError):
    """A use for something (node, project, component) the permit does not cover."""

    reason = "OUT_OF_SCOPE"


class DatasetFileError(MeshError):
    """A local data file that cannot be described (missing, unreadable, of an unknown format)."""

    reason = "DATASET_FILE"
