"""Scans cost what the spec declares: a burst or storm scan of a crowded directory looks its snacks up by name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import snackwatch.reconcile as reconcile_module
from snackwatch.desired import merge
from snackwatch.reconcile import Status, crowded, observe, reconcile_directory
from snackwatch.spec import Snack, Spec


def junk_filled(tmp_path: Path, count: int) -> Path:
    pantry = tmp_path / "pantry"
    pantry.mkdir()
    for index in range(count):
        os.close(os.open(pantry / f"junk{index}", os.O_CREAT | os.O_WRONLY, 0o644))
    return pantry


def test_a_scan_of_a_crowded_directory_never_lists_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pantry = junk_filled(tmp_path, 1000)
    desired = merge([Spec(tmp_path / "snacks.yaml", pantry, (Snack("Goldfish"), Snack("Popcorn")))])
    fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert crowded(fd, 2)  # 1,000 others, 2 snacks: the directory's size says so, no listing needed
    finally:
        os.close(fd)
    (pantry / "Goldfish").touch()

    def no_listing(*args: object) -> None:
        raise AssertionError("a burst scan listed a crowded directory")

    monkeypatch.setattr(reconcile_module.os, "scandir", no_listing)
    outcomes = reconcile_directory(desired, str(pantry), lookup=True)
    assert [(o.entry.name, o.status) for o in outcomes] == [("Popcorn", Status.CREATED)]


def test_a_full_listing_keeps_only_the_spec_s_names_and_our_own(tmp_path: Path) -> None:
    pantry = junk_filled(tmp_path, 300)
    (pantry / "Goldfish").touch()
    (pantry / ".snackwatch-1-0123456789ab.tmp").touch()
    fd = os.open(pantry, os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen = observe(fd, {"Goldfish", "Popcorn"})
        assert not crowded(fd, 600)  # a directory as big as its spec is listed, not looked up name by name
    finally:
        os.close(fd)
    assert set(seen) == {"Goldfish", ".snackwatch-1-0123456789ab.tmp"}  # memory bounded by the spec
