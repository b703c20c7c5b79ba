"""A daemon's JSON-lines log read incrementally: shared by the bench and the tests' end-to-end harness."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LogFile:
    """A JSON-lines log that a daemon writes; read incrementally."""

    path: Path
    entries: list[dict[str, Any]] = field(default_factory=list)
    _offset: int = 0

    def refresh(self) -> list[dict[str, Any]]:
        with open(self.path, "rb") as stream:
            stream.seek(self._offset)
            data = stream.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                self.entries.append(json.loads(line))
            except json.JSONDecodeError:
                self.entries.append({"message": line.decode(errors="replace"), "raw": True})
        return self.entries

    def events(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.refresh() if entry.get("event") == event]
