"""``python -m mesh.brokers``: run a local broker in the foreground, or pre-fetch the Kafka jars."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from mesh.brokers import BROKER_NAMES, BrokerError, BrokerStartError, BrokerUnavailableError, broker_from_name
from mesh.brokers.kafka import KAFKA_VERSION, fetch_kafka
from mesh.brokers.security import issue_broker_security
from mesh.errors import ConfigurationError, IdentityError
from mesh.home import NodeHome

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_START = 4

PROG = "python -m mesh.brokers"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts and CI logs show it whole.
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{PROG} -h')\n")


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Start a Kafka-compatible broker on 127.0.0.1 until SIGINT/SIGTERM, "
        "printing 'bootstrap=HOST:PORT' once it answers; 'fetch-kafka' only caches the Apache Kafka jars.",
    )
    parser.add_argument("what", choices=[*BROKER_NAMES, "fetch-kafka"], help="broker to run, or fetch-kafka")
    parser.add_argument("--workdir", type=Path, help="where config, data and the log go (default: a temporary dir)")
    parser.add_argument("--port", type=_port, help="client port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--secure",
        type=Path,
        metavar="OPERATOR_HOME",
        help="kafka only: mutual TLS and ACLs for the federation whose operator home this is "
        "(the broker's certificate is issued there, into WORKDIR/tls)",
    )
    return parser


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return port


class _SignalledError(Exception):
    """Raised in the main thread by SIGINT/SIGTERM."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _SignalledError(signal.Signals(signum).name)


def _serve(name: str, workdir: Path, port: int | None, secure: Path | None) -> int:
    security = None if secure is None else issue_broker_security(NodeHome(secure), workdir / "tls")
    broker = broker_from_name(name, workdir, port, security)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    try:
        broker.start()
        print(f"bootstrap={broker.bootstrap}", flush=True)
        if security is not None:
            print(f"secured: mutual TLS for the federation of {secure}; set INTERFED_TLS=1 in its nodes", flush=True)
        print(f"{name} ready (pid {broker.pid}, workdir {workdir}); Ctrl-C stops it", file=sys.stderr, flush=True)
        while broker.running:
            time.sleep(0.5)
        print(f"{PROG}: error: {name} exited on its own\n{broker.log_tail()}", file=sys.stderr)
        return EXIT_FAILED
    except _SignalledError:
        return EXIT_OK
    finally:
        # A second Ctrl-C must not cut the broker's clean shutdown short.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.what == "fetch-kafka":
            print(f"Apache Kafka {KAFKA_VERSION} jars: {fetch_kafka()}")
            return EXIT_OK
        if args.workdir is not None:
            return _serve(args.what, args.workdir, args.port, args.secure)
        scratch = Path(tempfile.mkdtemp(prefix=f"interfed-{args.what}-"))
        try:
            return _serve(args.what, scratch, args.port, args.secure)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except BrokerUnavailableError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except BrokerStartError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_START
    except (BrokerError, ConfigurationError, IdentityError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
