"""Specs and pantries on disk: spec text, snack names, the bare create loop, deletion, what is missing."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def spec_text(snacks: Sequence[str], pantry: str = "./pantry", content: str | None = None) -> str:
    """A v1 spec; with `content`, every snack is a mapping with that content."""
    if content is None:
        entries = "".join(f"  - {name}\n" for name in snacks)
    else:
        entries = "".join(f"  - name: {name}\n    content: {content!r}\n" for name in snacks)
    return f"version: 1\npantry: {pantry}\nsnacks:\n" + entries


def write_spec(spec: Path, snacks: Sequence[str], *, pantry: str = "./pantry", content: str | None = None) -> None:
    """Atomically replace the spec (write a temp file, rename over), as an editor saves."""
    temp = spec.with_name(f".{spec.name}.bench-tmp")
    temp.write_text(spec_text(snacks, pantry, content))
    os.rename(temp, spec)


def names(count: int, prefix: str = "s") -> list[str]:
    width = len(str(count - 1))
    return [f"{prefix}{index:0{width}d}" for index in range(count)]


def create_all(directory: Path, snacks: Sequence[str]) -> float:
    """The bare Python create loop (the baseline of measures 2 and 3); returns seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        started = time.perf_counter()
        for name in snacks:
            os.close(os.open(name, CREATE_FLAGS, 0o666, dir_fd=dir_fd))
        return time.perf_counter() - started
    finally:
        os.close(dir_fd)


def delete_all(directory: Path, snacks: Sequence[str]) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in snacks:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def missing(directory: Path, snacks: Sequence[str]) -> list[str]:
    present = set(os.listdir(directory)) if directory.is_dir() else set()
    return [name for name in snacks if name not in present]


def remove_tree(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
