"""`check` over several configs (files or conf.d directories): every file judged, every error collected."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from snackwatch.chase import BlockedPath
from snackwatch.desired import Desired, merge
from snackwatch.errors import SpecError
from snackwatch.spec import Spec, parse_spec, read_spec_bytes
from snackwatch.specset import spec_files

MAX_REPORTED = 50  # errors printed by one `check`; the rest are counted


@dataclass
class ConfigCheck:
    """What `check` found for one config path: its good specs merged, and every error (file by file)."""

    config: Path
    desired: Desired | None = None
    errors: list[SpecError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_config(config: Path) -> ConfigCheck:
    """Judge every spec file behind `config`: a file on its own, each *.yaml of a conf.d directory on its own
    (every independent error in it; a YAML syntax error stops it), then the good ones together (two claiming one
    name) and their pantries (one that exists but is not a directory)."""
    config = Path(os.path.abspath(config))
    result = ConfigCheck(config)
    try:
        files = spec_files(config)
    except OSError as error:
        result.errors.append(SpecError(config, None, f"cannot list specs: {error.strerror or error}"))
        return result
    if not files:
        result.errors.append(SpecError(config, None, "no *.yaml spec files in this directory"))
        return result
    specs: list[Spec] = []
    for path in files:
        try:
            specs.append(parse_spec(read_spec_bytes(path, follow=path == config), path))
        except SpecError as error:
            result.errors += [error, *error.also]  # every independent error in the file
    if not specs:
        return result
    try:
        desired = merge(specs)
    except SpecError as error:
        result.errors.append(error)
        return result
    result.errors += desired.clashes
    result.errors += (problem for spec in desired.specs if (problem := pantry_problem(spec, desired)) is not None)
    result.desired = desired
    return result


def pantry_problem(spec: Spec, desired: Desired) -> SpecError | None:
    """A pantry that exists but is not a directory (a file, a FIFO, a path below a file), or one the daemon would
    not reach (a symlink it would not follow, a directory owned by someone it does not trust, on the way or as the
    pantry: named with its path, kind and owner; also when the pantry does not exist yet), or None."""
    try:
        os.stat(spec.pantry)
    except NotADirectoryError:
        return SpecError(spec.path, spec.pantry_line, f"pantry {spec.pantry} is below a file, not a directory")
    except OSError:  # missing (it is created) or not ours to look at (the daemon says so when it runs) ...
        return _walk_problem(spec, desired)  # ... unless the way to it is refused
    if not spec.pantry.is_dir():
        return SpecError(spec.path, spec.pantry_line, f"pantry {spec.pantry} exists but is not a directory")
    return _walk_problem(spec, desired)


def _walk_problem(spec: Spec, desired: Desired) -> SpecError | None:
    """The pantry reached as the daemon reaches it: what the safe walk refuses on the way, or None."""
    try:
        os.close(desired.open_directory(str(spec.pantry), create=False))
    except BlockedPath as blocked:
        return SpecError(spec.path, spec.pantry_line, f"pantry {spec.pantry}: {blocked}")
    except OSError:
        return None  # missing parts are created; other errors are the daemon's to report as it runs
    return None


def error_lines(checks: list[ConfigCheck], limit: int = MAX_REPORTED) -> list[str]:
    """Every error as `path:line: message`, the first `limit` of them, then how many more there are."""
    errors = [str(error) for check in checks for error in check.errors]
    lines = errors[:limit]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more errors ({len(errors)} in all)")
    return lines
