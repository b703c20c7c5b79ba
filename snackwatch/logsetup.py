"""loguru sinks: human text, one JSON object per line, or journald's <N> priority prefix; stdlib logging routed in."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record, RecordException

TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}"
# syslog priorities (sd-daemon.h) for loguru's levels
PRIORITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
ERROR_PRIORITY = 3
# Every C0 control but tab, DEL and C1: a newline would start a journald line with a priority of its own
# choosing; an ANSI escape would drive the reader's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": r"\n", "\r": r"\r"}


def printable(text: str) -> str:
    r"""`text` as one line without control characters: a newline becomes a literal \n, ESC a literal \x1b."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda match: _ESCAPES.get(match.group(), f"\\x{ord(match.group()):02x}"), text)


def under_journald(stream: TextIO) -> bool:
    """True when `stream` is the journal stream systemd handed us (JOURNAL_STREAM=dev:ino matches)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(expected) and expected == f"{info.st_dev}:{info.st_ino}"


def _escape_message(record: Record) -> None:
    """loguru patcher: every sink (the log file's too) gets the message as one printable line."""
    record["message"] = printable(record["message"])


def _traceback_lines(exception: RecordException) -> list[str]:
    text = "".join(traceback.format_exception(exception.type, exception.value, exception.traceback))
    return [printable(line) for line in text.rstrip("\n").split("\n")]


def _stream_sink(stream: TextIO, *, journald: bool) -> Callable[[Message], None]:
    """Text lines (time, level, message), or journald lines (<N>message, no time of our own). Each traceback line
    is escaped and, under journald, carries the error priority: no line has a priority the daemon did not choose."""

    def write(message: Message) -> None:
        record = message.record
        text = printable(record["message"])
        if journald:
            lines = [f"<{PRIORITY.get(record['level'].name, 6)}>{text}"]
        else:
            lines = [f"{record['time']:YYYY-MM-DD HH:mm:ss.SSS} {record['level'].name: <7} {text}"]
        if record["exception"] is not None:
            prefix = f"<{ERROR_PRIORITY}>" if journald else ""
            lines += [prefix + line for line in _traceback_lines(record["exception"])]
        stream.write("\n".join(lines) + "\n")
        stream.flush()

    return write


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
    """Replace loguru's default sink with ours; every message is escaped to one printable line first.

    A `log_file` that cannot be opened for appending raises OSError before any sink is touched."""
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        with open(log_file, "a", encoding="utf-8"):
            pass
    stream = stream or sys.stderr
    logger.remove()
    logger.configure(patcher=_escape_message)
    if fmt == "json":
        logger.add(_json_sink(stream), level=level, format="{message}", diagnose=False)
    else:
        logger.add(_stream_sink(stream, journald=under_journald(stream)), level=level, format="{message}")
    if log_file:
        logger.add(
            log_file, level=level, format=TEXT_FORMAT, rotation="10 MB", retention=5, colorize=False, diagnose=False
        )
    logging.basicConfig(handlers=[_Intercept()], level=logging.WARNING, force=True)
