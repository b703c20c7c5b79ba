"""Files the user names for output (--log-file, --metrics-file): reached by the safe walk, never through a symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from snackwatch.chase import BlockedPath, open_pantry
from snackwatch.errors import SnackwatchError

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
LOG_FILE_MODE = 0o640
LOG_ROTATE_BYTES = 10 * 1024 * 1024
LOG_KEPT = 5  # NAME.1 (newest) .. NAME.5


class UnsafeOutput(SnackwatchError):
    """An output file that cannot be used safely: `--log-file PATH: why` (one line, exit 2 at start)."""

    def __init__(self, option: str, path: Path | str, why: str) -> None:
        super().__init__(f"{option} {path}: {why}")


def open_output_directory(path: Path, option: str) -> int:
    """An fd for the directory that holds the output file `path` (absolute), made if missing.

    Its ancestors are walked like a pantry (a symlink followed only where root or we own it and no one else may
    write); the directory itself must not be a symlink, must be owned by root or us, and not writable by others
    unless sticky (/tmp is fine: there only a file's owner may replace it)."""
    directory = path.parent
    try:
        parent = open_pantry(str(directory.parent), create=True)
    except BlockedPath as blocked:
        raise UnsafeOutput(option, path, f"a {blocked.kind.value} is in the way of {directory.parent}") from None
    except OSError as error:
        raise UnsafeOutput(option, path, f"{directory.parent}: {error.strerror or error}") from None
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory.name, 0o755, dir_fd=parent)
        fd = os.open(directory.name or ".", _DIRECTORY, dir_fd=parent)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symlink" if _is_symlink(parent, directory.name) else "not a directory"
            raise UnsafeOutput(option, path, f"its directory {directory} is {kind}: not used") from None
        raise UnsafeOutput(option, path, f"{directory}: {error.strerror or error}") from None
    finally:
        os.close(parent)
    info = os.fstat(fd)
    if info.st_uid not in (0, os.geteuid()):
        os.close(fd)
        raise UnsafeOutput(option, path, f"its directory {directory} is owned by uid {info.st_uid}: not used")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        os.close(fd)
        raise UnsafeOutput(
            option,
            path,
            f"its directory {directory} is writable by others (mode {stat.S_IMODE(info.st_mode):04o}) without "
            "the sticky bit: not used (use a directory of its own, e.g. a subdirectory snackwatch creates)",
        )
    return fd


def _is_symlink(directory_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=directory_fd).st_mode)
    except OSError:
        return False


def _refuse_file(info: os.stat_result, option: str, path: Path) -> None:
    """UnsafeOutput unless `info` is a regular file of ours with one link."""
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeOutput(option, path, "is a symlink: not followed")
    if stat.S_ISDIR(info.st_mode):
        raise UnsafeOutput(option, path, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeOutput(option, path, "is not a regular file")
    if info.st_uid != os.geteuid():
        raise UnsafeOutput(option, path, f"is owned by uid {info.st_uid}, not by uid {os.geteuid()}: not used")
    if info.st_nlink != 1:
        raise UnsafeOutput(option, path, f"has {info.st_nlink} hard links: not used")


def check_output_file(path: Path, option: str) -> None:
    """UnsafeOutput if `path` (made absolute) cannot be written safely; a missing file is fine (it is created)."""
    path = Path(os.path.abspath(path))
    directory = open_output_directory(path, option)
    try:
        info = os.lstat(path.name, dir_fd=directory)
    except FileNotFoundError:
        return
    finally:
        os.close(directory)
    _refuse_file(info, option, path)


def write_output_atomically(path: Path, text: str, mode: int, option: str) -> None:
    """Write `text` to a new temp file beside `path` (O_EXCL, 0600, then fchmod to `mode`), rename it over:
    readers see the old or the new file, whole. The existing file must be ours (check_output_file's rules)."""
    path = Path(os.path.abspath(path))
    directory = open_output_directory(path, option)
    temp = f".{path.name}.{secrets.token_hex(6)}"
    try:
        with contextlib.suppress(FileNotFoundError):
            _refuse_file(os.lstat(path.name, dir_fd=directory), option, path)
        fd = os.open(temp, _TEMP, 0o600, dir_fd=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fchmod(stream.fileno(), mode)
            os.rename(temp, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=directory)
            raise
    finally:
        os.close(directory)


class LogFile:
    """An append-only log file opened relative to its directory's fd, O_NOFOLLOW, ours, one link; rotated at
    LOG_ROTATE_BYTES to NAME.1 .. NAME.LOG_KEPT by renames within that directory (never through a path)."""

    def __init__(self, path: Path, option: str = "--log-file") -> None:
        self.path = Path(os.path.abspath(path))
        self.option = option
        self.directory = open_output_directory(self.path, option)
        try:
            self.fd = self._open()
        except BaseException:
            os.close(self.directory)
            raise
        self.size = os.fstat(self.fd).st_size

    def _open(self) -> int:
        try:
            fd = os.open(self.path.name, _APPEND, LOG_FILE_MODE, dir_fd=self.directory)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafeOutput(self.option, self.path, "is a symlink: not followed") from None
            raise UnsafeOutput(self.option, self.path, error.strerror or str(error)) from None
        try:
            _refuse_file(os.fstat(fd), self.option, self.path)
            os.lseek(fd, 0, os.SEEK_END)  # a file that is not really one (/proc/version) cannot seek: refused now
        except OSError as error:
            os.close(fd)
            raise UnsafeOutput(self.option, self.path, error.strerror or str(error)) from None
        except UnsafeOutput:
            os.close(fd)
            raise
        return fd

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        if self.size and self.size + len(data) > LOG_ROTATE_BYTES:
            self._rotate()
        os.write(self.fd, data)
        self.size += len(data)

    def flush(self) -> None:
        """Writes go straight to the file (os.write): nothing is buffered."""

    def _rotate(self) -> None:
        """Shift NAME.1.. up by one and start a new NAME; where a rename is refused (a sticky directory holding
        another user's NAME.1), the file grows on rather than a log line being lost."""
        name, fd = self.path.name, self.directory
        for number in range(LOG_KEPT - 1, 0, -1):
            with contextlib.suppress(OSError):
                os.rename(f"{name}.{number}", f"{name}.{number + 1}", src_dir_fd=fd, dst_dir_fd=fd)
        try:
            os.rename(name, f"{name}.1", src_dir_fd=fd, dst_dir_fd=fd)
            new = self._open()
        except (OSError, UnsafeOutput):
            self.size = 0  # not rotated: try again after another LOG_ROTATE_BYTES
            return
        os.close(self.fd)
        self.fd, self.size = new, 0

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.directory)
