"""The spec files behind one daemon (a file, or a conf.d directory of *.yaml): load, reload, last good per file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from snackwatch.desired import Desired, merge
from snackwatch.errors import SpecError
from snackwatch.spec import Spec, parse_spec, read_spec_bytes

SPEC_SUFFIXES = (".yaml", ".yml")


def is_spec_name(name: str) -> bool:
    """Whether a file in a conf.d directory is a spec: *.yaml or *.yml, not hidden."""
    return name.endswith(SPEC_SUFFIXES) and not name.startswith(".")


def spec_files(config: Path) -> list[Path]:
    """The spec files a config names: itself, or the *.yaml files of a directory (hidden ones skipped)."""
    if not config.is_dir():
        return [config]
    return sorted(path for path in config.iterdir() if is_spec_name(path.name))


class SpecFileNames:
    """The names a conf.d directory's specs may have (is_spec_name), as a container the watcher can ask; `extra`:
    other names that matter there (a `source:` file kept beside the specs)."""

    def __init__(self, extra: Container[str] = ()) -> None:
        self.extra = extra

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (is_spec_name(name) or name in self.extra)


@dataclass
class Reload:
    """What a reload found: the new desired state (None if nothing changed) and the problems, one per file."""

    desired: Desired | None = None
    problems: dict[Path, SpecError] = field(default_factory=dict)
    revived: list[Path] = field(default_factory=list)  # broken or missing files back with their last good bytes
    dropped: list[Path] = field(default_factory=list)  # spec files removed from a conf.d directory


@dataclass
class SpecSet:
    """The last good spec of every file, and the bytes it came from (a re-save of the same bytes is no change)."""

    config: Path
    specs: dict[Path, Spec]
    raw: dict[Path, bytes]
    desired: Desired
    problems: dict[Path, SpecError] = field(default_factory=dict)  # conf.d files left out at load (daemon only)

    @classmethod
    def load(cls, config: Path, *, strict: bool = True) -> SpecSet:
        """Load every spec file. `strict` (check, diff, once): any bad file is an error. Otherwise (the daemon)
        a bad file in a conf.d directory is left out and kept in `problems`, as it would be at runtime; only
        a config with no good file at all is an error."""
        config = Path(os.path.abspath(config))
        raw = {}
        specs = {}
        problems: dict[Path, SpecError] = {}
        files = spec_files(config)
        if not files:
            raise SpecError(config, None, "no *.yaml spec files in this directory")
        for path in files:
            try:
                data = read_spec_bytes(path, follow=path == config)
                specs[path], raw[path] = parse_spec(data, path), data
            except SpecError as error:
                if strict or path == config:
                    raise
                problems[path] = error
        if not specs:
            raise next(iter(problems.values()))
        desired = merge(specs.values())
        for clash in desired.clashes:
            if strict:
                raise clash
            problems.setdefault(clash.path, clash)
        return cls(config, specs, raw, desired, problems)

    @property
    def is_directory(self) -> bool:
        return self.config.is_dir()

    def watched_dirs(self) -> set[str]:
        """The directories whose changes may change the specs: the config's, and those its symlinks lead to
        (a spec managed by GNU stow or a dotfile manager is edited where the link points)."""
        return set(self.spec_names())

    def spec_names(self) -> dict[str, Container[str]]:
        """Per watched directory, the names whose changes matter (a busy /etc or a chmod of the pantry next
        to the spec is not a spec change): the spec, the link it is reached through (a ConfigMap's `..data`),
        and where it points; in a conf.d directory, its *.yaml files."""
        names: dict[str, set[str]] = {}
        if self.is_directory:
            found: dict[str, Container[str]] = {str(self.config): SpecFileNames()}
        else:
            names[str(self.config.parent)] = {self.config.name}
            with contextlib.suppress(OSError):
                hop = os.readlink(self.config)
                if not os.path.isabs(hop):
                    names[str(self.config.parent)].add(hop.split(os.sep, 1)[0])
            found = {}
        for path in [*map(str, self.raw), *self.source_files()]:
            real = os.path.realpath(path)
            names.setdefault(os.path.dirname(real), set()).add(os.path.basename(real))
            if os.path.dirname(path) != os.path.dirname(real):  # reached through a link: its own directory too
                names.setdefault(os.path.dirname(path), set()).add(os.path.basename(path))
        for directory, wanted in names.items():
            if isinstance(found.get(directory), SpecFileNames):
                found[directory] = SpecFileNames(wanted)
            found.setdefault(directory, wanted)
        return found

    def source_files(self) -> list[str]:
        """The `source:` files of the specs in force: a change in one is a spec change (spec_names() lists them
        with the spec files, so the watcher hears them and a reload re-reads them)."""
        return self.desired.sources()

    def reload(self, *, forced: bool, broken: set[Path]) -> Reload:
        """Re-read every spec file; `broken` are the files currently reported as broken or missing."""
        result = Reload()
        try:
            files = spec_files(self.config)
        except OSError as error:
            result.problems[self.config] = SpecError(self.config, None, f"cannot list specs: {error.strerror}")
            return result
        specs, raw, changed = dict(self.specs), dict(self.raw), forced
        clashing = {clash.path for clash in self.desired.clashes}
        if self.is_directory:
            for path in [path for path in specs if path not in files]:
                del specs[path], raw[path]
                result.dropped.append(path)
                changed = True
        for path in files:
            try:
                data = read_spec_bytes(path, follow=path == self.config)
                if data == self.raw.get(path) and not self._sources_changed(path, data):
                    if path in broken and path not in clashing:
                        result.revived.append(path)
                    continue
                specs[path], raw[path] = parse_spec(data, path), data
                changed = True
            except SpecError as error:
                result.problems[path] = error
        if not changed:
            self._clashes_into(self.desired, result)
            return result
        try:
            desired = merge(specs.values(), self.desired)
        except SpecError as error:
            result.problems[error.path] = error
            return result
        self._clashes_into(desired, result)
        self.specs, self.raw, self.desired = specs, raw, desired
        result.desired = desired
        return result

    def _sources_changed(self, path: Path, data: bytes) -> bool:
        """Whether a spec whose bytes did not change copies from a source that did (or can no longer be read:
        SpecError at the spec's line). Only specs with `source:` pay for this: their sources are read again."""
        spec = self.specs.get(path)
        if spec is None or not spec.sources():
            return False
        return parse_spec(data, path) != spec

    @staticmethod
    def _clashes_into(desired: Desired, result: Reload) -> None:
        for clash in desired.clashes:
            result.problems.setdefault(clash.path, clash)
