"""Warnings about a valid spec that likely says what was not meant: invisible name differences, $VARS, setuid modes."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from snackwatch.spec import Snack, Spec

_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_SPECIAL_BITS = 0o6000  # setuid, setgid


def edge_whitespace(name: str) -> bool:
    """Whether a component of `name` starts or ends with whitespace (in ASCII only a space can: the spec
    refuses control characters, tabs and newlines among them)."""
    if name.isascii():
        return name.startswith(" ") or name.endswith(" ") or " /" in name or "/ " in name
    return any(part != part.strip() for part in name.split("/"))


def hides_difference(name: str) -> bool:
    """Whether a name's text would hide what makes it differ: whitespace at the start or end of a component,
    or a spelling that Unicode NFC normalisation changes (é as e plus a combining accent)."""
    return edge_whitespace(name) or (not name.isascii() and not unicodedata.is_normalized("NFC", name))


def quoted(name: str) -> str:
    """A name in quotes; one that NFC normalisation changes is spelled with escapes ('Cafe\\u0301'), so two names
    that look alike are told apart."""
    return repr(name) if name.isascii() or unicodedata.is_normalized("NFC", name) else ascii(name)


def shown_name(name: str) -> str:
    """A name as logs show it: as it is, or quoted (see quoted()) when its plain text would hide a difference."""
    return quoted(name) if hides_difference(name) else name


def spec_warnings(spec: Spec, snacks: Sequence[Snack] | None = None) -> list[str]:
    """Each `path:line: warning: ...` for a spec that is valid but probably not what was meant; `snacks`: only
    about these (a reload's new or changed ones), the pantry left out."""
    warnings: list[str] = []
    variable = _VARIABLE.search(str(spec.pantry)) if snacks is None else None
    snacks = spec.snacks if snacks is None else snacks
    if variable is not None:
        warnings.append(
            f"{spec.path}:{spec.pantry_line}: warning: pantry {str(spec.pantry)!r} contains ${variable.group(1)}: "
            f"variables are not expanded, so a directory literally named {variable.group(0)!r} is made "
            "(write the path out; ~ is expanded)"
        )
    joined = "\n".join([snack.name for snack in snacks])  # no name holds a newline (control characters)
    plain = joined.isascii()
    spaced = any(edge in joined for edge in (" \n", "\n ", " /", "/ ")) or joined[:1] == " " or joined[-1:] == " "
    if plain and not spaced and not any(snack.mode for snack in snacks if snack.mode):
        return warnings  # the common case, one pass in C: 100k names are looked at in a few ms
    twins = {} if plain else _nfc_twins(spec)
    for snack in snacks:
        name = snack.name
        line = spec.line_of(snack)
        twin = twins.get(line) if twins else None
        edge = edge_whitespace(name)
        special = snack.mode is not None and snack.mode & _SPECIAL_BITS
        if not (twin or edge or special):
            continue
        where = f"{spec.path}:{line}: warning: snack {quoted(name)}"
        if edge:
            warnings.append(f"{where} has whitespace at the start or end of a name: the file is made with it")
        if twin is not None:
            warnings.append(
                f"{where} is the same name as {quoted(twin[0])} (line {twin[1]}) after Unicode NFC normalisation: "
                "two files whose names look alike"
            )
        if snack.mode is not None and special:
            bits = {0o4000: "setuid", 0o2000: "setgid", 0o6000: "setuid and setgid"}[snack.mode & _SPECIAL_BITS]
            warnings.append(
                f"{where} has mode {snack.mode:04o}, with the {bits} bit: under the shipped systemd unit "
                "(RestrictSUIDSGID=yes) such a mode cannot be applied and creating it fails"
            )
    return warnings


def _nfc_twins(spec: Spec) -> dict[int, tuple[str, int]]:
    """By line, the snacks whose name an earlier snack's equals after NFC normalisation: that name and its line.
    Only a spec with a non-ASCII name can have any (ASCII is NFC)."""
    seen: dict[str, tuple[str, int]] = {}
    twins = {}
    for snack in spec.snacks:
        line = spec.line_of(snack)
        first = seen.setdefault(unicodedata.normalize("NFC", snack.name), (snack.name, line))
        if first[0] != snack.name:
            twins[line] = first
    return twins
