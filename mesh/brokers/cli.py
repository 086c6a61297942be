"""``interfed broker``: run a local broker in the foreground, pre-fetch the Apache Kafka jars, secure a cluster."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from mesh.brokers import BrokerError, broker_from_name
from mesh.errors import ConfigurationError

app = typer.Typer(
    help="Run a local Kafka-compatible broker on 127.0.0.1; secure Apache Kafka for a federation (TLS, ACLs).",
    no_args_is_help=True,
)


class Kind(StrEnum):
    """The brokers ``interfed broker`` can start: the embedded tansu or Apache Kafka."""

    tansu = "tansu"
    kafka = "kafka"


@app.command("up")
def up(
    kind: Annotated[
        Kind, typer.Option(help="tansu (embedded, memory only) or kafka (Apache Kafka, KRaft)")
    ] = Kind.tansu,
    workdir: Annotated[Path | None, typer.Option(help="config, data and log (default: a temporary folder)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="client port (default: a free one)")] = None,
    secure: Annotated[
        bool,
        typer.Option(
            help="kafka only: mutual TLS and the authorizer for the federation of --home (its operator's home); "
            "then 'interfed broker acls --apply --home ...' lets its members in"
        ),
    ] = False,
    home: Annotated[
        Path | None, typer.Option("--home", envvar="INTERFED_HOME", help="with --secure: the operator's home")
    ] = None,
) -> None:
    """Start a broker, print 'bootstrap=HOST:PORT' once it answers, stop it cleanly on Ctrl-C.

    The embedded tansu broker has neither TLS nor ACLs: every process that reaches it reads and writes
    every topic. Use it on one machine, never with members you do not trust.
    """
    if secure and home is None:
        raise ConfigurationError(
            "--secure needs the operator's --home (the federation root issues the broker's certificate)"
        )
    if secure and kind is not Kind.kafka:
        raise ConfigurationError("--secure is for Apache Kafka (--kind kafka): tansu has neither TLS nor ACLs")
    if workdir is not None:
        _serve(kind, workdir, port, home if secure else None)
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"interfed-{kind.value}-"))
    try:
        _serve(kind, scratch, port, home if secure else None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _SignalledError(Exception):
    """Raised in the main thread by SIGTERM, so the broker is stopped as on Ctrl-C."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _SignalledError(signal.Signals(signum).name)


def _serve(kind: Kind, workdir: Path, port: int | None, operator: Path | None) -> None:
    """Run the broker until Ctrl-C or SIGTERM (then stop it cleanly); a broker that exits on its own fails."""
    from mesh.brokers.security import issue_broker_security
    from mesh.home import NodeHome

    security = None if operator is None else issue_broker_security(NodeHome(operator), workdir / "tls")
    broker = broker_from_name(kind.value, workdir, port, security)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    try:
        broker.start()
        typer.echo(f"bootstrap={broker.bootstrap}")
        if security is not None:
            typer.echo(f"secured: mutual TLS for the federation of {operator}; set INTERFED_TLS=1 in its nodes")
        typer.echo(f"{kind.value} ready (pid {broker.pid}, workdir {workdir}); Ctrl-C stops it", err=True)
        while broker.running:
            time.sleep(0.5)
        raise BrokerError(f"{kind.value} exited on its own\n{broker.log_tail()}")
    except _SignalledError:
        return
    finally:
        # A second Ctrl-C must not cut the broker's clean shutdown short.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        broker.stop()


@app.command("fetch-kafka")
def fetch() -> None:
    """Fetch and cache the Apache Kafka jars with Maven (CI warm-up)."""
    from mesh.brokers.kafka import KAFKA_VERSION, fetch_kafka

    typer.echo(f"Apache Kafka {KAFKA_VERSION} jars: {fetch_kafka()}")


@app.command("credentials")
def credentials(
    home: Annotated[Path, typer.Option("--home", envvar="INTERFED_HOME", help="the operator's home")],
    out: Annotated[Path, typer.Option("--out", help="folder for the key store, trust store and settings")],
    host: Annotated[
        list[str], typer.Option("--host", help="a name or IP address clients reach the listener by (repeat)")
    ],
) -> None:
    """Operator: secure an existing Kafka cluster for the federation.

    Writes a listener certificate issued by the federation root for --host, the root as trust store,
    and the broker settings (security.properties).
    """
    from mesh.brokers.security import issue_broker_security
    from mesh.home import NodeHome

    security = issue_broker_security(NodeHome(home), out, host)
    lines = [
        "# Add to each broker's server.properties, with an SSL listener for the clients, e.g.",
        "#   listeners=SSL://0.0.0.0:9093  advertised.listeners=SSL://<one of the --host names>:9093",
        "# (docs/operations.md, 'Securing the broker'). Copy the two stores to each broker; fix the paths.",
        *(f"{key}={value}" for key, value in security.properties().items()),
    ]
    (out / "security.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    typer.echo(f"wrote {security.keystore}, {security.truststore} and {out / 'security.properties'}")
