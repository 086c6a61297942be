"""The ``interfed`` command line: one Typer app, verb subcommands from beside what each drives."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from bench.cli import app as bench_app
from bench.cli_reads import bench_cli
from demos.cli import demo
from mesh.brokers.cli import app as broker_app
from mesh.cli import run
from services.accel.cli import app as accel_app
from services.catalog.cli import catalog_app
from services.components.cli import components_app
from services.evidence.cli import audit_app, evidence_app
from services.executor.cli import job_app
from services.federation.cli import federation_up
from services.registry.cli import broker_acls, broker_auditor, federation_app, node_app, registry_app

app = typer.Typer(
    name="interfed",
    help="interfed: a federation mesh for heterogeneous federated-learning platforms.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
federation_app.command("up")(federation_up)  # a whole local federation from one file
app.add_typer(federation_app, name="federation")
app.add_typer(node_app, name="node")
app.add_typer(registry_app, name="registry")
app.add_typer(catalog_app, name="catalog")
app.add_typer(components_app, name="components")
# The broker's ACLs and auditor credentials come from the registry's directory and the operator's home.
broker_app.command("acls")(broker_acls)
broker_app.command("auditor")(broker_auditor)
app.add_typer(broker_app, name="broker")
bench_app.command("cli")(bench_cli)  # the read commands against a running node
app.add_typer(bench_app, name="bench")
app.add_typer(audit_app, name="audit")
app.add_typer(evidence_app, name="evidence")
app.add_typer(accel_app, name="accel")
app.add_typer(job_app, name="job")
app.add_typer(job_app, name="task", hidden=True, deprecated=True)  # the old name, for one release
app.command("demo")(demo)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    run(app, argv)
