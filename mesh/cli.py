"""The ``interfed`` command line: one app, verb subcommands, one-line errors with distinct exit codes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import typer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from rich.console import Console
from typer._click.exceptions import UsageError

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

app = typer.Typer(
    name="interfed",
    help="interfed: a federation mesh for heterogeneous federated-learning platforms.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"interfed: error: {message}", markup=False)
    raise SystemExit(code)


def _register() -> None:
    # Commands live beside what they drive; importing here keeps `mesh` free of service imports.
    from accel.cli import app as accel_app
    from bench.cli import app as bench_app
    from mesh.brokers.cli import app as broker_app
    from services.catalog.cli import catalog_app
    from services.components.cli import components_app
    from services.demo import demo
    from services.evidence.cli import audit_app, evidence_app
    from services.executor.cli import task_app
    from services.registry.cli import broker_acls, broker_auditor, federation_app, node_app, registry_app

    app.add_typer(federation_app, name="federation")
    app.add_typer(node_app, name="node")
    app.add_typer(registry_app, name="registry")
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(components_app, name="components")
    # The broker's ACLs and auditor credentials come from the registry's directory and the operator's home.
    broker_app.command("acls")(broker_acls)
    broker_app.command("auditor")(broker_auditor)
    app.add_typer(broker_app, name="broker")
    app.add_typer(bench_app, name="bench")
    app.add_typer(audit_app, name="audit")
    app.add_typer(evidence_app, name="evidence")
    app.add_typer(accel_app, name="accel")
    app.add_typer(task_app, name="task")
    app.command("demo")(demo)


def _broker_failure(exc: KafkaError) -> str:
    if isinstance(exc, (TopicAuthorizationFailedError, GroupAuthorizationFailedError, ClusterAuthorizationFailedError)):
        return (
            f"the broker refused: not authorised ({exc}); a secured broker lets in members only, with the grants "
            "'interfed broker acls --apply' sets (not approved yet, revoked or terminated, or the ACLs not applied?)"
        )
    return f"broker: {exc}; is a broker running at the bootstrap address (a secured one: is INTERFED_TLS set)?"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    _register()
    command = typer.main.get_command(app)
    try:
        code = command.main(
            list(argv) if argv is not None else sys.argv[1:], prog_name="interfed", standalone_mode=False
        )
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
        fail(f"{exc.format_message()}{hint}", EXIT_USAGE)
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
