"""Run the test suite in its broker lanes: everything on Apache Kafka, then the broker suite on tansu.

Usage: python tests/lanes.py [kafka|tansu|HOST:PORT] (or INTERFED_TEST_BROKER). With neither, Apache Kafka is the
lane where Java 17+ and Maven exist; otherwise one line says why and tansu runs everything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

PYTEST = [sys.executable, "-m", "pytest"]


def java_major() -> int | None:
    if shutil.which("java") is None:
        return None
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def kafka_missing() -> str | None:
    """Why Apache Kafka cannot run here, or None if it can."""
    major = java_major()
    if major is None:
        return "java not found"
    if major < 17:
        return f"java {major} found, Apache Kafka needs 17+"
    if shutil.which("mvn") is None:
        return "mvn (Maven) not found"
    return None


def run(args: list[str]) -> int:
    print("+ pytest " + " ".join(args), flush=True)
    return subprocess.run(PYTEST + args, check=False).returncode


def main(argv: list[str]) -> int:
    chosen = argv[0] if argv else os.environ.get("INTERFED_TEST_BROKER", "")
    lane = chosen
    if not lane:
        missing = kafka_missing()
        if missing:
            print(f"Apache Kafka lane skipped: {missing}; running the whole suite on the embedded tansu broker.")
            lane = "tansu"
        else:
            lane = "kafka"
    code = run(["-q", f"--broker={lane}"])
    if code == 0 and lane == "kafka" and not chosen:
        # The same broker suite on the embedded broker, within its documented limits.
        code = run(["-q", "-m", "broker", "--broker=tansu"])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
