"""journald's native protocol: one datagram of KEY=value fields per entry, so every field can be filtered on."""

from __future__ import annotations

import os
import re
import socket
import struct
from collections.abc import Iterable, Mapping

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SOCKET_VARIABLE = "SNACKWATCH_JOURNAL_SOCKET"  # another socket (tests, containers binding one elsewhere)
SEND_TIMEOUT = 0.5  # seconds a send may wait for a full journald queue before the entry goes to stderr instead
MAX_VALUES = 100  # a list-valued field (SNACK=) is repeated at most this often in one entry
# (extra key, journal field) where one field per list item reads better than the key's own name
SINGULAR = {"snacks": "SNACK", "files": "FILE", "directories": "DIRECTORY"}
_INVALID = re.compile(r"[^A-Z0-9_]")


def socket_path() -> str:
    return os.environ.get(SOCKET_VARIABLE) or JOURNAL_SOCKET


def field_name(key: str) -> str:
    """`key` as a journal field: upper case, A-Z 0-9 _ only, not starting with _ or a digit (those are
    journald's trusted fields), at most 64 characters."""
    name = _INVALID.sub("_", key.upper()).lstrip("_0123456789")
    return (name or "FIELD")[:64]


def fields_of(extra: Mapping[str, object]) -> Iterable[tuple[str, str]]:
    """A record's bound fields as journal fields; a list is one field per item (`snacks` -> SNACK=a, SNACK=b)."""
    for key, value in extra.items():
        name = SINGULAR.get(key) or field_name(key)
        if isinstance(value, (list, tuple, set, frozenset)):
            for item in list(value)[:MAX_VALUES]:
                yield name, str(item)
        elif value is not None:
            yield name, str(value)


def encode(fields: Iterable[tuple[str, str]]) -> bytes:
    """The datagram: `KEY=value\\n`, or for a value holding a newline `KEY\\n` + its length (64-bit little
    endian) + the value + `\\n`, as sd_journal_sendv() sends it."""
    parts = []
    for name, value in fields:
        data = value.encode("utf-8", "backslashreplace")
        key = name.encode("ascii")
        if b"\n" in data:
            parts.append(key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key + b"=" + data + b"\n")
    return b"".join(parts)


class JournalSocket:
    """A datagram socket to journald; send() says whether the entry went (else the caller writes it another way)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.socket.settimeout(SEND_TIMEOUT)

    @classmethod
    def connect(cls, path: str | None = None) -> JournalSocket | None:
        """A sender for the socket at `path` (default: socket_path()), or None if nothing listens there."""
        sender = cls(path or socket_path())
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(sender.path)
        except OSError:
            sender.close()
            return None
        finally:
            probe.close()
        return sender

    def send(self, fields: Iterable[tuple[str, str]]) -> bool:
        """Send one entry (addressed each time, so a restarted journald's new socket is found)."""
        try:
            self.socket.sendto(encode(fields), self.path)
        except OSError:  # journald restarting (ECONNREFUSED), an entry too large (EMSGSIZE), a full queue (timeout)
            return False
        return True

    def close(self) -> None:
        self.socket.close()
