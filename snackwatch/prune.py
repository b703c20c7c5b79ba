"""Opt-in, guarded pruning: delete files snackwatch created that left a `prune: true` spec, within a breaker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import time
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from snackwatch.chase import BlockedPath, open_directory
from snackwatch.desired import Desired
from snackwatch.errors import SnackwatchError
from snackwatch.lazylog import logger  # loguru itself only once the daemon logs
from snackwatch.lock import SpecLock, process_start, running_pid
from snackwatch.owned import OwnershipRecord
from snackwatch.spec import Spec
from snackwatch.state import (
    open_state_dir,
    owned_path,
    prune_confirm_path,
    read_trusted,
    reason,
    write_atomically,
)
from snackwatch.text import name_list

CONFIRM_TTL = 60.0  # seconds a `prune --yes` confirmation stays good for the daemon it names
Removal = Literal["pruned", "kept", "gone"]


class Pending(NamedTuple):
    """Files a pruning spec's record lists inside its pantry that left the spec, and how many it manages there."""

    spec: Spec
    files: list[str]
    managed: int


class Pruner:
    """The daemon's side: records what it creates for pruning specs, and prunes after each good reload.

    Nothing here raises into the daemon: an unusable record or state directory is logged once and pruning
    waits until the record is sound and written. An unsafe state directory refuses the start (UntrustedPath).
    """

    def __init__(self, config: Path) -> None:
        self.config = config
        self.started = process_start(os.getpid())
        self.save_problem = ""
        self.warned: frozenset[str] = frozenset()
        with contextlib.suppress(OSError):  # a full or read-only state filesystem: saving says so, once
            os.close(open_state_dir())
        self.owned = OwnershipRecord(owned_path(config))
        if self.owned.problem:
            doubted = self.owned.doubted
            which = "every entry" if doubted is None else "the entries of " + ", ".join(sorted(doubted))
            logger.bind(event="owned_unsound", file=str(self.owned.path)).warning(
                "ownership record {} is unusable ({}): dropped {}, whose files will never be pruned; "
                "the record is rewritten at the next state write",
                self.owned.path,
                self.owned.problem,
                which,
            )

    def record_before_publish(self, created: Sequence[tuple[str, os.stat_result, Path]]) -> None:
        """Files about to be published for pruning specs (path, identity, spec): recorded, and on disk (the
        record's journal, fsynced) first, so a kill -9 right after the names appear cannot lose them. A journal
        that cannot be written does not stop the creation (the snacks matter more than pruning them): the
        failure is logged once, as for save()."""
        for path, info, spec in created:
            self.owned.record(path, info, spec)
        try:
            self.owned.append_to_journal([path for path, _, _ in created])
        except (OSError, SnackwatchError) as error:
            self._unwritable(error)

    def forget(self, path: str) -> None:
        """A recorded file was not published after all: not ours (saved with the next write)."""
        self.owned.forget(path)

    def save(self) -> None:
        """Write the ownership record if it changed; a failure is logged once per distinct problem."""
        try:
            self.owned.save()
        except (OSError, SnackwatchError) as error:
            self._unwritable(error)
        else:
            if self.save_problem:
                logger.bind(event="owned_written").info("ownership record {} written again", self.owned.path)
            self.save_problem = ""

    def _unwritable(self, error: OSError | SnackwatchError) -> None:
        problem = reason(error)
        if problem != self.save_problem:
            logger.bind(event="owned_unwritable", file=str(self.owned.path)).warning(
                "cannot write ownership record {}: {}; no pruning until it can be written",
                self.owned.path,
                problem,
            )
        self.save_problem = problem

    def take_confirmation(self) -> bool:
        """A `snackwatch prune --yes` confirmation for this very daemon: consumed here, honoured once, if fresh.

        One left for another daemon (a stopped or killed one, or an earlier process with this pid), or
        expired, is deleted with a warning, and the breaker holds.
        """
        path = prune_confirm_path(self.config)
        try:
            text = read_trusted(path)
        except FileNotFoundError:
            return False
        except (OSError, SnackwatchError) as error:
            text = reason(error).encode()
        try:
            directory = open_state_dir()
            try:
                os.unlink(path.name, dir_fd=directory)
            finally:
                os.close(directory)
        except (OSError, SnackwatchError) as error:
            logger.bind(event="prune_confirmation_ignored").warning(
                "ignored a prune confirmation that cannot be removed ({}): the circuit breaker holds", reason(error)
            )
            return False
        problem = confirmation_problem(text, os.getpid(), self.started, time.time())
        if problem:
            logger.bind(event="prune_confirmation_ignored").warning(
                "ignored a prune confirmation {}: the circuit breaker holds; if still intended, "
                "run: snackwatch prune --yes -c {}",
                problem,
                self.config,
            )
        return not problem

    def prune(self, desired: Desired, *, confirmed: bool) -> None:
        """Delete what left its spec, unless that is more than the breaker allows and not confirmed."""
        if not any(spec.prune for spec in desired.specs):
            return
        self.save()  # what was created is on disk before anything is deleted
        if self.save_problem:
            return
        pending, outside = find_pending(self.owned, desired)
        self._ignore(outside)
        for spec, files, managed in pending:
            if confirmed or breaker_allows(len(files), managed):
                self._remove(files, str(spec.pantry))
            elif self.warned != frozenset(files):
                self.warned = frozenset(files)
                logger.bind(event="prune_blocked", count=len(files), spec=str(spec.path)).warning(
                    "not pruning {} files that left {}: more than max(3, 25%) of the {} it created; "
                    "kept them all. If that is intended, run: snackwatch prune --yes -c {}",
                    len(files),
                    spec.path,
                    managed,
                    self.config,
                )
        self.save()

    def _ignore(self, outside: list[str]) -> None:
        if outside:
            for file in outside:
                self.owned.forget(file)
            logger.bind(event="prune_outside", files=outside).warning(
                "ignored the ownership record of {}: not inside the pantry of the spec that recorded it; "
                "forgotten, never pruned",
                name_list(outside),
            )

    def _remove(self, files: list[str], pantry: str) -> None:
        done = remove_owned(files, pantry, self.owned)
        if done["pruned"]:
            logger.bind(event="pruned", files=done["pruned"]).info(
                "pruned {} (left the spec)", name_list(done["pruned"])
            )
        if done["kept"]:
            logger.bind(event="prune_kept", files=done["kept"]).warning(
                "not pruning {}: changed or replaced since snackwatch created it", name_list(done["kept"])
            )


def in_pantry(path: str, pantry: str) -> bool:
    """Whether `path` names something strictly below `pantry`, with no empty, `.` or `..` component."""
    prefix = pantry.rstrip("/") + "/"
    return path.startswith(prefix) and all(part not in ("", ".", "..") for part in path[len(prefix) :].split("/"))


def find_pending(owned: OwnershipRecord, desired: Desired) -> tuple[list[Pending], list[str]]:
    """The files that left each pruning spec, inside its pantry; and the recorded ones outside it."""
    owners = {path: str(info["spec"]) for path, info in owned.files.items()}
    specs = {str(spec.path): spec for spec in desired.specs if spec.prune}
    managed: dict[str, int] = {}
    for path, owner in owners.items():
        if owner in specs and in_pantry(path, str(specs[owner].pantry)):
            managed[owner] = managed.get(owner, 0) + 1
    pending: list[Pending] = []
    outside: list[str] = []
    for owner, files in prune_candidates(owners, desired.paths(), set(specs)).items():
        pantry = str(specs[owner].pantry)
        inside = [file for file in files if in_pantry(file, pantry)]
        outside += [file for file in files if not in_pantry(file, pantry)]
        if inside:
            pending.append(Pending(specs[owner], inside, managed.get(owner, 0)))
    return pending, outside


def remove_owned(files: list[str], pantry: str, owned: OwnershipRecord) -> dict[Removal, list[str]]:
    """Delete each file only if it is still the regular file or symlink we created (dev, ino, size, mtime as
    recorded), each directory only if it is still ours and empty (deepest first), and forget them: which were
    pruned, kept (changed, replaced, not empty, or not reachable without a symlink), or gone.

    Each directory is reached from the pantry by the same no-follow walk creation uses, once, and each name
    is checked and unlinked relative to that directory's fd: a directory swapped for a symlink on the way
    (even between the check and the unlink) can never redirect a deletion.
    """
    done: dict[Removal, list[str]] = {"pruned": [], "kept": [], "gone": []}
    by_directory: dict[str, list[str]] = {}
    for file in files:
        by_directory.setdefault(os.path.dirname(file), []).append(file)
    for directory in sorted(by_directory, key=lambda path: -path.count("/")):  # a directory's contents go first
        paths = by_directory[directory]
        try:
            fd = open_directory(directory, pantry, create=False)
        except FileNotFoundError:
            done["gone"] += paths
            continue
        except (OSError, BlockedPath):
            done["kept"] += paths
            continue
        try:
            for path in paths:
                done[_remove_at(fd, path, owned)].append(path)
        finally:
            os.close(fd)
    for file in files:
        owned.forget(file)
    return done


def _remove_at(directory_fd: int, path: str, owned: OwnershipRecord) -> Removal:
    """A file or symlink is unlinked if it is still the one recorded (inode, size, mtime); a directory is removed
    (rmdir) only if it is still the recorded inode and empty. Anything else is kept."""
    name = os.path.basename(path)
    try:
        info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode) and owned.same_inode(path, info):
            os.rmdir(name, dir_fd=directory_fd)  # ENOTEMPTY: someone put something in it: kept
            return "pruned"
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)) or not owned.matches(path, info):
            return "kept"
        os.unlink(name, dir_fd=directory_fd)
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "kept"
    return "pruned"


def confirmation_text(pid: int, started: int | None, now: float) -> str:
    """A confirmation for the daemon `pid` that started at `started`, good for CONFIRM_TTL seconds."""
    return json.dumps({"pid": pid, "started": started, "expires": now + CONFIRM_TTL}) + "\n"


def confirmation_problem(text: bytes, pid: int, started: int | None, now: float) -> str:
    """Why a confirmation must not be honoured by the daemon (`pid`, `started`) at `now`; "" if it may."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("expires"), float):
        return f"that is unreadable ({text[:60]!r})"
    if (data.get("pid"), data.get("started")) != (pid, started):
        return f"left for another daemon (pid {data.get('pid')}), not this one (pid {pid})"
    if not now <= data["expires"] <= now + CONFIRM_TTL:
        return f"that expired {now - data['expires']:.0f} s ago"
    return ""


def prune_pending(config: Path, desired: Desired) -> dict[str, list[str]]:
    """Files snackwatch created that left a spec with prune: true (what `prune --yes` would delete)."""
    owned = _sound_record(config)
    return {str(spec.path): files for spec, files, _ in find_pending(owned, desired)[0]}


def why_left(config: Path, desired: Desired, name: str) -> str | None:
    """For `why NAME` when no spec declares it: the story of a file snackwatch created for a `prune: true` spec
    that it left, held back by the circuit breaker or about to go; None if NAME is no such file (or the record
    cannot be read)."""
    try:
        owned = _sound_record(config)
    except SnackwatchError:
        return None
    given = os.path.abspath(name)
    for spec, files, managed in find_pending(owned, desired)[0]:
        for file in files:
            if file != given and os.path.relpath(file, spec.pantry) != name:
                continue
            lines = [
                f"{name}: {file}",
                f"  no spec declares it now; snackwatch created it for {spec.path} (prune: true)",
            ]
            if breaker_allows(len(files), managed):
                lines.append("  it left the spec: the daemon prunes it when it next applies the spec")
            else:
                lines += [
                    f"  held back by the prune circuit breaker: {len(files)} files left that spec, more than "
                    f"max(3, 25%) of the {managed} it created, so none is deleted",
                    f"  `snackwatch prune -c {config}` lists them; `snackwatch prune --yes -c {config}` deletes them"
                    " once",
                ]
            return "\n".join(lines)
    return None


def confirm_prune(config: Path, desired: Desired) -> str:
    """Past the circuit breaker once: ask the daemon proven to hold this config's lock, or prune here if none runs."""
    pid = running_pid(config)
    if pid == -1:
        raise SnackwatchError(f"the lock for {config} is held, but not by the pid written in it: not signalling anyone")
    if pid is not None:
        return _ask_daemon(config, pid)
    lock = SpecLock(config)  # no daemon may start while we delete
    try:
        owned = _sound_record(config)
        pending, outside = find_pending(owned, desired)
        lines = [f"ignored {file}: not inside its spec's pantry" for file in outside]
        for file in outside:
            owned.forget(file)
        for spec, files, _ in pending:
            lines += [f"pruned {file}" for file in remove_owned(files, str(spec.pantry), owned)["pruned"]]
        owned.save()
    finally:
        lock.release()
    return "\n".join(lines) or "nothing to prune"


def _ask_daemon(config: Path, pid: int) -> str:
    """Leave a confirmation bound to the daemon `pid` (and its start time), then SIGHUP it through a pidfd:
    the signal reaches that process or none, never one that reused its pid."""
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    try:
        started = process_start(pid)
        if running_pid(config) != pid:
            raise SnackwatchError(f"the daemon for {config} (pid {pid}) stopped: nothing confirmed")
        write_atomically(prune_confirm_path(config), confirmation_text(pid, started, time.time()))
        if pidfd is None:
            os.kill(pid, signal.SIGHUP)
        else:
            signal.pidfd_send_signal(pidfd, signal.SIGHUP)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return f"asked the running daemon (pid {pid}) to prune; see its log"


def _sound_record(config: Path) -> OwnershipRecord:
    owned = OwnershipRecord(owned_path(config))
    if owned.problem:
        raise SnackwatchError(
            f"ownership record {owned.path} is unusable ({owned.problem}): nothing pruned from it; "
            "a running daemon rewrites it (or remove it to start a new one)"
        )
    return owned


def prune_candidates(
    owners: Mapping[str, str], desired: Container[str], prunable_specs: set[str]
) -> dict[str, list[str]]:
    """Files we created (path -> declaring spec) that left the spec, for specs with prune: true, by spec."""
    candidates: dict[str, list[str]] = {}
    for path, spec in sorted(owners.items()):
        if path not in desired and spec in prunable_specs:
            candidates.setdefault(spec, []).append(path)
    return candidates


def breaker_allows(count: int, managed: int) -> bool:
    """The deletion circuit breaker: prune at most max(3, 25%) of the files a spec manages in one go."""
    return count <= max(3, managed // 4)
