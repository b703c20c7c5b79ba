"""The shipped systemd units (package data in snackwatch/systemd/), rendered to run a given Python's snackwatch."""

from __future__ import annotations

import os
import string
import sys
from collections.abc import Iterable, Sequence
from importlib import resources

TEMPLATE_COMMAND = "/usr/local/bin/snackwatch"  # what the shipped units' ExecStart= runs
HOME_ROOTS = ("/home", "/root", "/run/user")  # what ProtectHome=yes hides from the system unit
TMP_ROOTS = ("/tmp", "/var/tmp")  # what PrivateTmp=yes replaces with empty directories of the unit's own
# (the shipped line hiding `roots`, what it becomes when paths under them are bound back read-only)
_HIDING = (
    ("ProtectHome=yes", "ProtectHome=tmpfs", HOME_ROOTS),  # tmpfs: empty but a place to bind into
    ("PrivateTmp=yes", "PrivateTmp=yes", TMP_ROOTS),  # the binds land inside the unit's own /tmp, /var/tmp
)
_PLAIN = frozenset(string.ascii_letters + string.digits + "/._-+,:@=~")


def template(*, user: bool) -> str:
    """The shipped unit file: systemd/user/snackwatch.service or systemd/snackwatch.service."""
    folder = resources.files("snackwatch") / "systemd"
    return ((folder / "user") if user else folder).joinpath("snackwatch.service").read_text(encoding="utf-8")


def quote(word: str) -> str:
    """A path as one word of a unit setting: specifiers (%) escaped, quoted unless plain.

    (`$` needs no escape: systemd expands variables in a command's arguments, not in its executable.)
    """
    escaped = word.replace("%", "%%")
    if all(char in _PLAIN for char in word):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(python: str, *, user: bool = False, bind_paths: Sequence[str] = ()) -> str:
    """The unit with ExecStart= (and the ExecReload= check) running `python -m snackwatch`; the system unit can
    still read `bind_paths`.

    `bind_paths` (see `hidden_by_sandbox`) lie under a home, /tmp or /var/tmp, hidden by ProtectHome= and
    PrivateTmp=: the system unit binds each back read-only (systemd takes a bind's source from the host, so
    one under /tmp shows up inside the unit's otherwise empty private /tmp). The user unit hides neither.
    """
    stray = [path for path in bind_paths if not any(_inside(path, root) for root in HOME_ROOTS + TMP_ROOTS)]
    if stray:
        raise ValueError(f"the sandbox does not hide {stray}: nothing to bind back")
    text = template(user=user)
    for setting in ("ExecStart", "ExecReload"):  # the daemon, and the check a reload runs first
        old = f"\n{setting}={TEMPLATE_COMMAND} "
        if text.count(old) != 1:
            raise ValueError(f"the shipped unit has no single {old.strip()!r} line")
        text = text.replace(old, f"\n{setting}={quote(python)} -m snackwatch ")
    if user:
        return text
    for shipped, relaxed, roots in _HIDING:
        under = [path for path in bind_paths if any(_inside(path, root) for root in roots)]
        if under:
            if text.count(f"\n{shipped}\n") != 1:
                raise ValueError(f"the shipped system unit has no single {shipped!r} line")
            binds = "".join(f"BindReadOnlyPaths={quote(path)}\n" for path in under)
            text = text.replace(f"\n{shipped}\n", f"\n{relaxed}\n{binds}", 1)
    return text


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def hidden_by_sandbox(paths: Iterable[str]) -> list[str]:
    """Those of `paths` that the system unit cannot see (under a home, /tmp or /var/tmp), dropping any
    inside another: what to bind back."""
    normalized = {os.path.normpath(path) for path in paths}
    roots = HOME_ROOTS + TMP_ROOTS
    hidden = sorted(path for path in normalized if any(_inside(path, root) for root in roots))
    return [path for index, path in enumerate(hidden) if not any(_inside(path, outer) for outer in hidden[:index])]


def interpreter_paths() -> list[str]:
    """Where this Python, its standard library, its packages and snackwatch itself live."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [
        os.path.dirname(os.path.realpath(sys.executable)),
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        package_parent,
        *sys.path[1:],  # sys.path[0] is the current or script directory, not the install
    ]
    found = [path for path in candidates if path and os.path.exists(path)]
    # both spellings: /opt/venv may be a symlink into /tmp, and the unit follows it there
    return [*map(os.path.abspath, found), *map(os.path.realpath, found)]


def for_this_interpreter(*, user: bool) -> str:
    """The unit for the Python running now (what `snackwatch unit [--user]` prints)."""
    return render(sys.executable, user=user, bind_paths=hidden_by_sandbox(interpreter_paths()))
