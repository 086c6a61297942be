"""structlog set-up: JSON lines to a file (or stderr on request), never a flood on the terminal."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

import structlog

from mesh.settings import load_settings

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Sink:
    """The open log file, replaced when logging is configured again."""

    file: TextIO | None = None


def configure(path: Path | None = None, level: str | None = None, to_stderr: bool = False) -> None:
    """Send JSON logs to ``path`` (appending), or to stderr, or nowhere when neither is given.

    ``level`` defaults to ``INTERFED_LOG_LEVEL`` (info).
    """
    if level is None:
        level = load_settings().log_level
    if _Sink.file is not None and _Sink.file not in (sys.stderr, sys.stdout):
        _Sink.file.close()
    if to_stderr:
        _Sink.file = sys.stderr
    elif path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _Sink.file = path.open("a", encoding="utf-8", buffering=1)
    else:
        _Sink.file = None
    sink = _Sink.file
    min_level = _LEVELS[level] if sink is not None else logging.CRITICAL
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.WriteLoggerFactory(file=sink or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiokafka logs through stdlib logging: route it into the same JSON lines, never the terminal.
    client = logging.getLogger("aiokafka")
    client.handlers = [_ToStructlog()]
    client.propagate = False
    client.setLevel(logging.WARNING if sink is not None else logging.CRITICAL)


class _ToStructlog(logging.Handler):
    """Hands stdlib log records (from aiokafka) to structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(record.levelno, record.getMessage())
