"""What every ``interfed`` command shares: the exit codes (one table, docs/operations.md) and one-line errors.

``run`` runs a Typer app so that each failure is one line with its code. The app itself is ``interfed.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from mesh.errors import BrokerAccessError, ConfigurationError, IdentityError, MeshError, RejectedEventError

#: Exit codes, one per kind of failure, documented in docs/operations.md.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_BROKER = 4
EXIT_REFUSED = 5
EXIT_AUDIT_FAILED = 6
EXIT_INCOMPLETE = 7
EXIT_INTERRUPTED = 130

err = Console(stderr=True, highlight=False, soft_wrap=True)


Command = TypeVar("Command", bound=Callable[..., Any])


def command(app: typer.Typer, name: str, *, formerly: str | None = None) -> Callable[[Command], Command]:
    """Register a command under ``name``, and under its old name ``formerly`` for one release.

    The old name is hidden from the help and marked deprecated: it still works, with a note on stderr
    (docs/architecture.md, Glossary).
    """

    def register(fn: Command) -> Command:
        app.command(name)(fn)
        if formerly is not None:
            app.command(formerly, hidden=True, deprecated=True)(fn)
        return fn

    return register


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    err.print(f"interfed: error: {message}", markup=False)
    raise SystemExit(code)


def _broker_failure(exc: Exception) -> str:
    from aiokafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        TopicAuthorizationFailedError,
    )

    if isinstance(exc, (TopicAuthorizationFailedError, GroupAuthorizationFailedError, ClusterAuthorizationFailedError)):
        return (
            f"the broker refused: not authorised ({exc}); a secured broker lets in members only, with the grants "
            "'interfed broker acls --apply' sets (not approved yet, revoked or terminated, or the ACLs not applied?)"
        )
    return f"broker: {exc}; is a broker running at the bootstrap address (a secured one: is INTERFED_TLS set)?"


def _failure(exc: Exception) -> tuple[str, int] | None:
    """The one line and exit code of a failure, or None for one that is a bug (its traceback is wanted)."""
    # Imported here, on the way out: the Kafka client's errors cost a command's start what most never need.
    from aiokafka.errors import KafkaError

    from mesh.brokers import BrokerError, BrokerUnavailableError

    if isinstance(exc, BrokerUnavailableError):
        return str(exc), EXIT_BROKER
    if isinstance(exc, BrokerError):
        return str(exc).splitlines()[0] + " (the broker log follows)\n" + str(exc), EXIT_BROKER
    if isinstance(exc, (ConfigurationError, IdentityError)):
        return str(exc), EXIT_CONFIG
    if isinstance(exc, BrokerAccessError):
        return str(exc), EXIT_BROKER
    if isinstance(exc, RejectedEventError):
        return f"{exc.reason}: {exc}", EXIT_REFUSED
    if isinstance(exc, MeshError):
        return f"{exc.reason}: {exc}", EXIT_FAILED
    if isinstance(exc, KafkaError):
        return _broker_failure(exc), EXIT_BROKER
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc or 'no answer from the broker at the bootstrap address'}", EXIT_BROKER
    if isinstance(exc, OSError):
        return str(exc), EXIT_FAILED
    return None


def run(app: typer.Typer, argv: Sequence[str] | None = None) -> None:
    """Run ``app`` as the console script does: each failure one line on stderr and its exit code (``EXIT_*``)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(
            list(argv) if argv is not None else sys.argv[1:], prog_name="interfed", standalone_mode=False
        )
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except typer.TyperException as exc:  # the public base of a usage error (a bad option, a missing argument)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
        fail(f"{exc.format_message()}{hint}", EXIT_USAGE if exc.exit_code == EXIT_USAGE else EXIT_FAILED)
    except (typer.Abort, KeyboardInterrupt):
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        failure = _failure(exc)
        if failure is None:
            raise
        fail(*failure)
