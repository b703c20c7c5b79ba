"""plan() and render(): pure, no filesystem."""

from __future__ import annotations

from snackwatch.plan import Conflict, Create, Kind, plan, render
from snackwatch.spec import Snack

A, B, C, D = Snack("a"), Snack("b", mode=0o640), Snack("c"), Snack("d")


def test_missing_snacks_are_created_present_files_are_left_alone() -> None:
    assert plan([A, B, C], {"a": Kind.FILE, "zzz": Kind.FILE}) == [Create(B), Create(C)]


def test_non_files_in_a_snacks_place_are_conflicts() -> None:
    observed = {"a": Kind.DIRECTORY, "b": Kind.SYMLINK, "c": Kind.OTHER, "d": Kind.FILE}
    assert plan([A, B, C, D], observed) == [
        Conflict(A, Kind.DIRECTORY),
        Conflict(B, Kind.SYMLINK),
        Conflict(C, Kind.OTHER),
    ]


def test_nothing_to_do_is_an_empty_plan() -> None:
    assert plan([A], {"a": Kind.FILE}) == []
    assert plan([], {"a": Kind.FILE}) == []


def test_render_lists_one_line_per_action() -> None:
    lines = render([Create(A), Create(B), Conflict(C, Kind.SYMLINK)])
    assert lines == ["+ a", "+ b (mode 0640)", "! c: a symlink is in its place (left alone)"]
