"""O(changed) reloads, pure: a spec patched from the lines an edit touched equals a fresh parse of the new bytes,
and the desired state built from the old one equals a fresh merge; anything else falls back (None)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from snackwatch.desired import DeclaredIn, Desired, merge, patch
from snackwatch.errors import SpecError
from snackwatch.patch import changed_span, patch_spec
from snackwatch.spec import Spec, parse_spec

SPEC = Path("/etc/snackwatch/snacks.yaml")
HEADER = "version: 1\npantry: /pantry\nsnacks:\n"


def no_source(path: Path) -> bytes:
    raise AssertionError("no source in these specs")


def parsed(text: str) -> Spec:
    return parse_spec(text.encode(), SPEC, no_source)


def attempt(old_text: str, new_text: str) -> tuple[Spec | None, tuple[Desired, object] | None]:
    """(the patched spec or None, (the patched desired, its delta) or None)."""
    old = parsed(old_text)
    before = merge([old])
    result = patch_spec(old, old_text.encode(), new_text.encode(), DeclaredIn(before, old), no_source)
    if result is None:
        return None, None
    return result.spec, patch(before, result.spec, result.gone, result.came)


def placed(spec: Spec) -> tuple[object, ...]:
    """A spec as users see it: every snack where it stands now (Spec.line_of), and the header."""
    snacks = tuple((spec.line_of(snack), snack._replace(line=0)) for snack in spec.snacks)
    return snacks, spec.path, spec.pantry, spec.prune, spec.pantry_line, spec.defaults


def entries(desired: Desired) -> dict[str, tuple[object, ...]]:
    return {
        entry.path: (desired.line_of(entry), entry.snack._replace(line=0), entry.spec, entry.directory, entry.name)
        for entry in desired.entries()
    }


def same_desired(one: Desired, other: Desired) -> None:
    assert [placed(spec) for spec in one.specs] == [placed(spec) for spec in other.specs]
    assert entries(one) == entries(other)
    assert {d: set(e) for d, e in one.files.items()} == {d: set(e) for d, e in other.files.items()}
    assert (one.directories, one.roots, one.children, one.rules, one.clashes) == (
        other.directories,
        other.roots,
        other.children,
        other.rules,
        other.clashes,
    )


def test_a_changed_mode_is_the_only_change() -> None:
    old = HEADER + "  - a\n  - name: b\n    mode: '0640'\n  - c\n"
    new = old.replace("'0640'", "'0600'")
    spec, built = attempt(old, new)
    assert spec == parsed(new)  # the same lines: nothing moved, the very same snacks
    assert built is not None
    desired, delta = built
    same_desired(desired, merge([parsed(new)]))
    assert [entry.snack.name for entry in delta.changed] == ["b"]  # type: ignore[attr-defined]
    assert delta.added == delta.removed == ()  # type: ignore[attr-defined]


def test_an_inserted_line_moves_the_lines_below_and_adds_one() -> None:
    old = HEADER + "".join(f"  - s{i}\n" for i in range(10))
    new = old.replace("  - s4\n", "  - new\n  - s4\n")
    spec, built = attempt(old, new)
    assert spec is not None and placed(spec) == placed(parsed(new))
    assert spec.snacks[6:] == parsed(old).snacks[5:]  # the snacks below are kept: only the line map moved
    assert built is not None
    desired, delta = built
    same_desired(desired, merge([parsed(new)]))
    assert [entry.snack.name for entry in delta.added] == ["new"]  # type: ignore[attr-defined]
    assert delta.removed == delta.changed == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "new",
    [
        HEADER.replace("/pantry", "/elsewhere") + "  - a\n  - b\n",  # the header
        HEADER + "  - a\n  - a\n",  # a duplicate
        HEADER + "  - a\n  - [b\n",  # invalid YAML
        HEADER + "  - a\n  - b\nprune: true\n",  # a key after the list
        HEADER + "  - a\n  - name: b\n    type: directory\n",  # a directory entry
        HEADER + "  - a\n  - b",  # no final newline
        HEADER + "  - a\n  - a/x\n",  # a file where a directory is needed
    ],
)
def test_what_the_patch_cannot_prove_is_left_to_the_full_parse(new: str) -> None:
    assert attempt(HEADER + "  - a\n  - b\n", new) == (None, None)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # an item whose value is on the line below its dash: a blank put in the dash's place reads as the
        # item above continued (the full parse refuses)
        ("  - g16\n  -\n    a5\n  - g2\n", "  - g16\n\n    a5\n  - g2\n"),
        # the same dash replaced by a line that continues the item above: one snack `t4 - inner a5`
        ("  - t4\n  -\n    a5\n", "  - t4\n      - inner\n    a5\n"),
        # a document end in the middle of the list: what follows is not part of the spec (refused)
        ("  - a\n  - b\n  - c\n", "  - a\n...\n  - b\n  - c\n"),
        ("  - a\n  - b\n  - c\n", "  - a\n---\n  - b\n  - c\n"),
        (  # the same after a block scalar, in a file that already ended with `...`
            "  - name: h4\n    content: |\n      line 4\n\n  - q\n...\n",
            "  - name: h4\n    content: |\n      line 4\n...\n  - q\n...\n",
        ),
    ],
)
def test_an_edit_that_reaches_beyond_its_items_is_left_to_the_full_parse(old: str, new: str) -> None:
    """Found by fuzzing with continuation lines and document markers: whatever the full parse says
    (refused, or one snack where the patch would have kept two), the patch must not answer instead."""
    spec, _ = attempt(HEADER + old, HEADER + new)
    try:
        fresh = parsed(HEADER + new)
    except SpecError:
        assert spec is None
        return
    assert spec is None or placed(spec) == placed(fresh)


def test_the_changed_span_is_whole_lines() -> None:
    old, new = b"A\nB\n", b"A\nBX\nB\n"
    assert changed_span(old, new) == (2, 4, 7)
    assert changed_span(b"a\nb\nc\n", b"a\nc\n") == (2, 4, 2)


ITEMS = [
    "  - {name}\n",
    "  - name: {name}\n    mode: '0{mode}'\n",
    "  - name: {name}\n    content: |\n      line {mode}\n",
    "  - d{mode}/{name}\n",
    "  - name: {name}\n    type: symlink\n    target: t{mode}\n",
    "  # a comment {mode}\n",
    "\n",
]
NOISE = ["  - [", "  - a: b: c\n", "    mode: '0999'\n", "prune: true\n", "  - name: x\n    nope: 1\n", "- y\n"]
# Shapes whose meaning depends on the lines around them (the fuzzing that found the patch's blind spots).
NOISE += ["    continued{mode}\n", "      - inner{mode}\n", "...\n", "---\n", "  -\n    a{mode}\n", " - odd{mode}\n"]
NOISE += ["  - |\n    block{mode}\n", "  - x{mode} #c\n", "\t- x\n"]


def random_item(rng: random.Random) -> str:
    name = rng.choice(["a", "b", "c", "d", "e", "f", "g", "h", "Ж", "s s"]) + str(rng.randrange(30))
    return rng.choice(ITEMS).format(name=name, mode=rng.choice("4567"))


def noise(rng: random.Random) -> str:
    return rng.choice(NOISE).replace("{mode}", rng.choice("4567"))


def random_spec(rng: random.Random) -> str:
    while True:
        text = HEADER + "".join(random_item(rng) for _ in range(rng.randrange(1, 25)))
        try:
            parsed(text)
        except SpecError:
            continue
        return text


def random_edit(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(1 if rng.random() < 0.8 else rng.randrange(2, 6)):  # now and then a big edit
        at = rng.randrange(3, len(lines) + 1)
        what = rng.random()
        if what < 0.3 and at < len(lines):
            del lines[at]
        elif what < 0.6:
            lines.insert(at, noise(rng) if rng.random() < 0.15 else random_item(rng))
        elif at < len(lines):
            lines[at] = noise(rng) if rng.random() < 0.15 else random_item(rng)
    return "".join(lines)


def test_random_edits_patched_equal_a_fresh_parse_and_merge() -> None:
    """The property: whenever the patch answers, its spec is the full parse's and its desired state a fresh
    merge's; whenever the full parse refuses the new text, the patch answered None."""
    rng = random.Random(23)
    patched = merged = 0
    for _ in range(600):
        old = random_spec(rng)
        new = random_edit(rng, old)
        spec, built = attempt(old, new)
        try:
            fresh = parsed(new)
        except SpecError:
            assert spec is None, new
            continue
        if spec is None:
            continue
        patched += 1
        assert placed(spec) == placed(fresh), (old, new)
        if built is not None:
            merged += 1
            same_desired(built[0], merge([fresh]))
    assert patched > 150 and merged > 100  # the fast path is taken, not only the fallback


def test_chains_of_edits_keep_every_line_where_a_fresh_parse_puts_it() -> None:
    """Edits patched on top of patched specs (the line map composed), each checked against a fresh parse."""
    rng = random.Random(5)
    moved = 0
    for _ in range(60):
        text = random_spec(rng)
        spec, desired = parsed(text), merge([parsed(text)])
        for _ in range(10):
            new = random_edit(rng, text)
            try:
                fresh = parsed(new)
            except SpecError:
                continue
            result = patch_spec(spec, text.encode(), new.encode(), DeclaredIn(desired, spec), no_source)
            built = patch(desired, result.spec, result.gone, result.came) if result is not None else None
            if result is not None:
                assert placed(result.spec) == placed(fresh), (text, new)
                moved += bool(result.spec.lines.steps)
            spec = result.spec if result is not None else fresh
            desired = built[0] if built is not None else merge([spec])
            same_desired(desired, merge([fresh]))
            text = new
    assert moved > 50  # lines did move under patched specs
