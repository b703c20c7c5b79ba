"""plan() and render(): pure, no filesystem."""

from __future__ import annotations

from snackwatch.plan import Conflict, Create, Kind, plan, render
from snackwatch.prune import breaker_allows, prune_candidates
from snackwatch.spec import Snack

A, B, C, D = Snack("a"), Snack("b", mode=0o640), Snack("c"), Snack("d")


def wanted(*snacks: Snack) -> dict[str, Snack]:
    return {snack.name: snack for snack in snacks}


def test_missing_snacks_are_created_present_files_are_left_alone() -> None:
    assert plan(wanted(A, B, C), {"a": Kind.FILE, "zzz": Kind.FILE}) == [Create("b", B), Create("c", C)]


def test_non_files_in_a_snacks_place_are_conflicts() -> None:
    observed = {"a": Kind.DIRECTORY, "b": Kind.SYMLINK, "c": Kind.OTHER, "d": Kind.FILE}
    assert plan(wanted(A, B, C, D), observed) == [
        Conflict("a", A, Kind.DIRECTORY),
        Conflict("b", B, Kind.SYMLINK),
        Conflict("c", C, Kind.OTHER),
    ]


def test_nothing_to_do_is_an_empty_plan() -> None:
    assert plan(wanted(A), {"a": Kind.FILE}) == []
    assert plan({}, {"a": Kind.FILE}) == []


def test_render_lists_one_line_per_action() -> None:
    lines = render([Create("a", A), Create("b", B), Conflict("c", C, Kind.SYMLINK)])
    assert lines == ["+ a", "+ b (mode 0640)", "! c: a symlink is in its place (left alone)"]


def test_prune_candidates_are_owned_files_that_left_a_pruning_spec() -> None:
    owners = {"/p/a": "s1.yaml", "/p/b": "s1.yaml", "/p/c": "s2.yaml", "/p/d": "s1.yaml"}
    assert prune_candidates(owners, {"/p/a"}, {"s1.yaml"}) == {"s1.yaml": ["/p/b", "/p/d"]}
    assert prune_candidates(owners, {"/p/a"}, set()) == {}


def test_circuit_breaker_allows_at_most_max_3_or_a_quarter() -> None:
    assert breaker_allows(3, 3) and breaker_allows(3, 4) and not breaker_allows(4, 4)
    assert breaker_allows(25, 100) and not breaker_allows(26, 100)
    assert not breaker_allows(100, 100)
