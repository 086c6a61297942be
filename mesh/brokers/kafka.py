"""Launcher for a single-node Apache Kafka (KRaft) whose jars Maven fetches from Maven Central."""

from __future__ import annotations

import base64
import os
import re
import shutil
import ssl
import string
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from mesh.brokers._base import (
    RUN_HEADER,
    BrokerError,
    BrokerStartError,
    BrokerUnavailableError,
    ProcessBroker,
    free_ports,
)
from mesh.brokers.security import BrokerSecurity

#: The release fetched by default; must equal ``kafka.version`` in deploy/kafka/pom.xml.
KAFKA_VERSION = "4.3.1"
#: Kafka 4.x brokers are compiled for Java 17.
MIN_JAVA = 17

STORAGE_TOOL = "kafka.tools.StorageTool"
SERVER_MAIN = "kafka.Kafka"
HEAP = ("-Xms128m", "-Xmx512m")

_MARKER = ".complete"
_HINT = "install them or use --broker tansu"


def deploy_dir() -> Path:
    """deploy/kafka of this checkout (``$INTERFED_KAFKA_DEPLOY`` overrides it)."""
    override = os.environ.get("INTERFED_KAFKA_DEPLOY")
    if override:
        return Path(override)
    # Only an editable install or a checkout has deploy/; a wheel does not ship it.
    return Path(__file__).resolve().parents[2] / "deploy" / "kafka"


def cache_root() -> Path:
    """``$INTERFED_CACHE``, else ~/.cache/interfed."""
    override = os.environ.get("INTERFED_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "interfed"


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    """The folder of Apache Kafka's jars of ``version``, in the cache the deploy project fills."""
    return cache_root() / f"kafka-{version}" / "libs"


def java_major(java: str) -> int | None:
    """Major version of a ``java`` executable, None when it cannot be told."""
    try:
        out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report themselves as 1.x.
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> str:
    """Path of a Java 17+ ``java``, or BrokerUnavailableError saying what is missing."""
    java = shutil.which("java")
    if java is None:
        raise BrokerUnavailableError(f"Apache Kafka needs Java {MIN_JAVA}+ and Maven (java not found); {_HINT}")
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        found = "an unknown version" if major is None else f"Java {major}"
        raise BrokerUnavailableError(f"Apache Kafka needs Java {MIN_JAVA}+ and Maven ({java} is {found}); {_HINT}")
    return java


def fetch_kafka(version: str = KAFKA_VERSION) -> Path:
    """Ensure the jars of Kafka ``version`` are in the cache and return their directory.

    A complete cache is reused without Maven. Maven copies into a scratch
    directory that is renamed into place with its marker, so a concurrent or
    interrupted fetch never leaves a half-filled libs/ that looks complete.
    """
    libs = libs_dir(version)
    if (libs / _MARKER).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailableError(f"Apache Kafka needs Java {MIN_JAVA}+ and Maven (mvn not found); {_HINT}")
    pom = deploy_dir() / "pom.xml"
    if not pom.is_file():
        raise BrokerUnavailableError(
            f"Apache Kafka deploy files not found ({pom} is missing); set INTERFED_KAFKA_DEPLOY to deploy/kafka"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    scratch = libs.parent / f"libs.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        # A failed earlier attempt (e.g. offline) is cached in ~/.m2 and would not be retried.
        "-U",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={scratch}",
    ]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0 or not any(scratch.glob(f"kafka_2.13-{version}.jar")):
        shutil.rmtree(scratch, ignore_errors=True)
        log = libs.parent / "mvn.log"
        log.write_text(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}")
        why = _first_maven_error(done.stdout + done.stderr) or f"exit code {done.returncode}"
        raise BrokerError(f"Maven could not fetch Apache Kafka {version}: {why} (full output: {log})")
    (scratch / _MARKER).write_text(" ".join(sorted(p.name for p in scratch.glob("*.jar"))) + "\n")
    try:
        scratch.rename(libs)
    except OSError:
        # Another process finished first (libs/ exists and is complete); keep theirs.
        shutil.rmtree(scratch, ignore_errors=True)
        if not (libs / _MARKER).is_file():
            raise
    return libs


def _first_maven_error(output: str) -> str | None:
    # Even in batch mode Debian's Maven prefixes lines with colour resets.
    for line in re.sub(r"\x1b\[[0-9;]*m", "", output).splitlines():
        if line.startswith("[ERROR]") and line[7:].strip():
            return line[7:].split(" -> [Help")[0].strip()
    return None


def new_cluster_id() -> str:
    """A random Kafka cluster id: a UUID in unpadded URL-safe base64, like ``kafka-storage random-uuid``."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka never hands out ids starting with "-": they read as command-line flags.
        if not text.startswith("-"):
            return text


class ApacheKafkaBroker(ProcessBroker):
    """Apache Kafka, broker and controller in one JVM, on two loopback ports, data in the workdir.

    With ``security``, both listeners speak mutual TLS for one federation and the authorizer is on
    (mesh/brokers/security.py); clients then need a certificate of that federation (mesh/tls.py).
    """

    name = "kafka"
    log_name = "kafka.log"
    start_timeout = 90.0
    # Time for a controlled shutdown (flushes, closes logs) so a restart needs no recovery.
    stop_timeout = 20.0

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        version: str = KAFKA_VERSION,
        security: BrokerSecurity | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.version = version
        self.security = security
        self.controller_port: int | None = None
        self._java: str | None = None
        self._libs: Path | None = None

    @property
    def config_path(self) -> Path:
        """The server.properties this broker is started with."""
        return self.workdir / "server.properties"

    @property
    def data_dir(self) -> Path:
        """The folder the broker keeps its log segments in."""
        return self.workdir / "kafka-data"

    def _classpath(self) -> str:
        assert self._libs is not None
        # java expands the trailing "*" itself; no shell is involved.
        return str(self._libs / "*")

    def _prepare(self) -> None:
        self._java = require_java()
        self._libs = fetch_kafka(self.version)
        if self._port is None:
            self._port, self.controller_port = free_ports(2)
        else:
            self.controller_port = next(p for p in free_ports(2) if p != self._port)
        self._write_config()
        self._format_storage()

    def _write_config(self) -> None:
        template_path = deploy_dir() / "server.properties"
        try:
            template = string.Template(template_path.read_text())
        except FileNotFoundError:
            raise BrokerUnavailableError(
                f"Apache Kafka deploy files not found ({template_path} is missing); "
                "set INTERFED_KAFKA_DEPLOY to deploy/kafka"
            ) from None
        text = template.substitute(
            client_port=self.port,
            controller_port=self.controller_port,
            log_dir=self.data_dir,
            protocol="PLAINTEXT" if self.security is None else "SSL",
        )
        if self.security is not None:
            text += "\n# Secured for one federation (mesh/brokers/security.py)\n"
            text += "".join(f"{key}={value}\n" for key, value in self.security.properties().items())
        self.config_path.write_text(text)

    def _probe_context(self) -> ssl.SSLContext | None:
        return None if self.security is None else self.security.client_context()

    def _format_storage(self) -> None:
        assert self._java is not None
        if (self.data_dir / "meta.properties").is_file():
            # Data of an earlier run in this workdir: keep it. Formatting again would
            # fail even with --ignore-formatted, as the fresh cluster id differs.
            return
        cmd = [
            self._java,
            *HEAP,
            "-cp",
            self._classpath(),
            STORAGE_TOOL,
            "format",
            "--config",
            str(self.config_path),
            "--cluster-id",
            new_cluster_id(),
        ]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=self.workdir)
        with self.log_path.open("a") as log:
            log.write(f"\n{RUN_HEADER}{' '.join(cmd)}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise BrokerStartError(self._start_failure(f"storage format failed with code {done.returncode}"))

    def _command(self) -> Sequence[str]:
        assert self._java is not None
        return [
            self._java,
            *HEAP,
            # Without a log4j2 file the default configuration logs ERROR only; INFO
            # is what explains a broker that starts but never becomes ready.
            "-Dlog4j2.level=INFO",
            "-Djava.awt.headless=true",
            "-cp",
            self._classpath(),
            SERVER_MAIN,
            str(self.config_path),
        ]
