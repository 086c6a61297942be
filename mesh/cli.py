"""What every ``interfed`` command shares: the exit codes (one table, docs/operations.md) and one-line errors.

``run`` runs a Typer app so that each failure is one line with its code. The app itself is ``interfed.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from rich.console import Console

from mesh.brokers import BrokerError, BrokerUnavailableError
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


def _broker_failure(exc: KafkaError) -> str:
    if isinstance(exc, (TopicAuthorizationFailedError, GroupAuthorizationFailedError, ClusterAuthorizationFailedError)):
        return (
            f"the broker refused: not authorised ({exc}); a secured broker lets in members only, with the grants "
            "'interfed broker acls --apply' sets (not approved yet, revoked or terminated, or the ACLs not applied?)"
        )
    return f"broker: {exc}; is a broker running at the bootstrap address (a secured one: is INTERFED_TLS set)?"


def run(app: typer.Typer, argv: Sequence[str] | None = None) -> None:  # noqa: C901  # one except per exit code
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
    except BrokerUnavailableError as exc:
        fail(str(exc), EXIT_BROKER)
    except BrokerError as exc:
        fail(str(exc).splitlines()[0] + " (the broker log follows)\n" + str(exc), EXIT_BROKER)
    except (ConfigurationError, IdentityError) as exc:
        fail(str(exc), EXIT_CONFIG)
    except BrokerAccessError as exc:
        fail(str(exc), EXIT_BROKER)
    except RejectedEventError as exc:
        fail(f"{exc.reason}: {exc}", EXIT_REFUSED)
    except MeshError as exc:
        fail(f"{exc.reason}: {exc}")
    except KafkaError as exc:
        fail(_broker_failure(exc), EXIT_BROKER)
    except TimeoutError as exc:
        fail(f"timed out: {exc or 'no answer from the broker at the bootstrap address'}", EXIT_BROKER)
    except OSError as exc:
        fail(str(exc))
