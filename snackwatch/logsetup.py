"""loguru sinks: human text or one JSON object per line; under journald its native protocol (fields per record), else
the <N> priority prefix; the log file in the same format; stdlib logging routed in."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from loguru import logger

from snackwatch.journal import JournalSocket, fields_of
from snackwatch.outputs import LogFile

if TYPE_CHECKING:
    from loguru import Message, Record, RecordException

# syslog priorities (sd-daemon.h) for loguru's levels
PRIORITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
ERROR_PRIORITY = 3
# Every C0 control but tab, DEL and C1: a newline would start a journald line with a priority of its own
# choosing; an ANSI escape would drive the reader's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": r"\n", "\r": r"\r"}
IDENTIFIER = "snackwatch"


class Writable(Protocol):
    """Where a sink writes lines: a stream (stderr) or the log file."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> None: ...


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


class _Closing:
    """A sink function and what to close when loguru removes it (loguru calls a sink object's stop())."""

    def __init__(self, write: Callable[[Message], None], close: Callable[[], None]) -> None:
        self.write = write
        self.stop = close


def _patch(record: Record) -> None:
    """loguru patcher: every sink (the log file's too) gets the message as one printable line, and one shape per
    concept: the snacks an event is about are always a list, `snacks` (an event bound with `snack=` gets [it])."""
    record["message"] = printable(record["message"])
    extra = record["extra"]
    if "snack" in extra:
        extra["snacks"] = [extra.pop("snack")]


def _traceback_lines(exception: RecordException) -> list[str]:
    text = "".join(traceback.format_exception(exception.type, exception.value, exception.traceback))
    return [printable(line) for line in text.rstrip("\n").split("\n")]


def _stream_sink(stream: Writable, *, journald: bool) -> Callable[[Message], None]:
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


def _json_sink(stream: Writable, *, journald: bool = False) -> Callable[[Message], None]:
    """One JSON object per line; under journald (no native socket) each line starts with its <N> priority."""

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
        prefix = f"<{PRIORITY.get(record['level'].name, 6)}>" if journald else ""
        stream.write(prefix + json.dumps(entry, default=str) + "\n")
        stream.flush()

    return write


def _journal_sink(journal: JournalSocket, fallback: Callable[[Message], None]) -> Callable[[Message], None]:
    """Each record as one journal entry: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, where in the code, and the record's
    bound fields upper-cased (EVENT=restored, SNACK=Goldfish once per snack); a traceback follows the message on
    lines of its own. An entry the socket refuses is written by `fallback` (the <N> stream form) instead."""

    def write(message: Message) -> None:
        record = message.record
        text = printable(record["message"])
        if record["exception"] is not None:
            text = "\n".join([text, *_traceback_lines(record["exception"])])
        fields = [
            ("MESSAGE", text),
            ("PRIORITY", str(PRIORITY.get(record["level"].name, 6))),
            ("SYSLOG_IDENTIFIER", IDENTIFIER),
            ("CODE_FILE", record["file"].path),
            ("CODE_LINE", str(record["line"])),
            ("CODE_FUNC", record["function"]),
            *fields_of(record["extra"]),
        ]
        if not journal.send(fields):
            fallback(message)

    return write


class _Intercept(logging.Handler):
    """Send stdlib logging records (watchdog's) through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        level: str | int = record.levelname if record.levelname in PRIORITY else record.levelno
        logger.opt(exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    log_file: str | None = None,
    stream: TextIO | None = None,
    journal_socket: str | None = None,
) -> None:
    """Replace loguru's default sink with ours; every message is escaped to one printable line first.

    Under journald (JOURNAL_STREAM names `stream`) records go through its native socket (`journal_socket`, else
    $SNACKWATCH_JOURNAL_SOCKET, else /run/systemd/journal/socket) whatever the format; without that socket, lines
    on `stream` carry the <N> prefix, in either format. `log_file` gets the same format (text lines with a time,
    or JSON), opened safely (outputs.LogFile): UnsafeOutput or OSError before any sink is touched."""
    file = LogFile(Path(log_file)) if log_file else None
    stream = stream or sys.stderr
    journald = under_journald(stream)
    logger.remove()
    logger.configure(patcher=_patch)
    on_stream = _json_sink(stream, journald=journald) if fmt == "json" else _stream_sink(stream, journald=journald)
    journal = JournalSocket.connect(journal_socket) if journald else None
    if journal is not None:
        sink = _Closing(_journal_sink(journal, on_stream), journal.close)
        logger.add(sink, level=level, format="{message}", diagnose=False)
    else:
        logger.add(on_stream, level=level, format="{message}", diagnose=False)
    if file is not None:
        in_file = _json_sink(file) if fmt == "json" else _stream_sink(file, journald=False)
        logger.add(_Closing(in_file, file.close), level=level, format="{message}", diagnose=False)
    logging.basicConfig(handlers=[_Intercept()], level=logging.WARNING, force=True)
