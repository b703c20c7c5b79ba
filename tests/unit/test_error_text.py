"""One wording for an OSError everywhere a user reads one: `No space left on device (ENOSPC)`."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import write_spec

import snackwatch.reconcile as reconcile_module
from snackwatch.cli import main
from snackwatch.errors import error_text
from snackwatch.state import reason


def test_once_the_daemon_and_the_state_files_word_an_error_alike(
    spec_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "Goldfish")
    assert error_text(full) == reason(full) == "No space left on device (ENOSPC)"
    write_spec(spec_path, ["Goldfish"])
    monkeypatch.setattr(reconcile_module, "create_plain_snacks", lambda fd, names: [full for _ in names])
    assert main(["once", "-c", str(spec_path)]) == 1
    assert capsys.readouterr().err == "cannot create Goldfish: No space left on device (ENOSPC)\n"
