"""loguru sinks: human text, one JSON object per line, or journald's <N> priority prefix; stdlib logging routed in."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}"
# syslog priorities (sd-daemon.h) for loguru's levels
PRIORITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def under_journald(stream: TextIO) -> bool:
    """True when `stream` is the journal stream systemd handed us (JOURNAL_STREAM=dev:ino matches)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(expected) and expected == f"{info.st_dev}:{info.st_ino}"


def _journald_format(record: Record) -> str:
    # loguru reads "<6>" in a format as a color tag (and rejects it): "\<" is a literal "<"
    return f"\\<{PRIORITY.get(record['level'].name, 6)}>{{message}}\n{{exception}}"


def _json_sink(stream: TextIO) -> Callable[[Message], None]:
    def write(message: Message) -> None:
        record = message.record
        entry = {
            "time": record["time"].isoformat(),
            "level": record["level"].name,
            "message": record["message"],
            **record["extra"],
        }
        if record["exception"] is not None:
            entry["exception"] = str(message).rstrip("\n").split("\n", 1)[-1]
        stream.write(json.dumps(entry, default=str) + "\n")
        stream.flush()

    return write


class _Intercept(logging.Handler):
    """Send stdlib logging records (watchdog's) through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        level: str | int = record.levelname if record.levelname in PRIORITY else record.levelno
        logger.opt(exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def setup_logging(
    level: str = "INFO", fmt: str = "text", log_file: str | None = None, stream: TextIO | None = None
) -> None:
    """Replace loguru's default sink with ours."""
    stream = stream or sys.stderr
    logger.remove()
    if fmt == "json":
        logger.add(_json_sink(stream), level=level, format="{message}", diagnose=False)
    elif under_journald(stream):
        logger.add(stream, level=level, format=_journald_format, colorize=False, diagnose=False)
    else:
        logger.add(stream, level=level, format=TEXT_FORMAT, colorize=False, diagnose=False)
    if log_file:
        logger.add(
            log_file, level=level, format=TEXT_FORMAT, rotation="10 MB", retention=5, colorize=False, diagnose=False
        )
    logging.basicConfig(handlers=[_Intercept()], level=logging.WARNING, force=True)
