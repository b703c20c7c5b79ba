"""The spec files behind one daemon (a file, or a conf.d directory of *.yaml): load, reload, last good per file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from snackwatch.desired import DeclaredIn, Delta, Desired, merge, patch
from snackwatch.errors import SpecError
from snackwatch.lastgood import LastGood, Saved, applied_text
from snackwatch.patch import Patched, patch_spec
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
class Reread:
    """What one re-read of the spec files found: the new desired state (None if nothing changed) and the problems,
    one per file; the reloader (reload.py) decides what it means."""

    desired: Desired | None = None
    delta: Delta | None = None  # the desired state was built from the old one with these changes (else merged)
    problems: dict[Path, SpecError] = field(default_factory=dict)
    revived: list[Path] = field(default_factory=list)  # broken or missing files back with their last good bytes
    dropped: list[Path] = field(default_factory=list)  # spec files removed from a conf.d directory


@dataclass
class SpecSet:
    """The last good spec of every file, and the bytes it came from (a re-save of the same bytes is no change).

    Whether the config is a file or a conf.d directory is fixed at load: the other kind in its place later is
    a spec error, and the last good spec stays in force."""

    config: Path
    specs: dict[Path, Spec]
    raw: dict[Path, bytes]
    desired: Desired
    problems: dict[Path, SpecError] = field(default_factory=dict)  # files left out or replaced at load (daemon only)
    is_directory: bool = False
    last_good: LastGood | None = None  # where applied specs are saved (the daemon, unless --no-last-good)
    from_saved: dict[Path, float] = field(default_factory=dict)  # files run from a saved copy -> when it was applied
    removed: dict[Path, float] = field(default_factory=dict)  # files gone while stopped -> their saved copy's time
    unsaved: dict[Path, bytes] = field(default_factory=dict)  # taken by a reload, saved once it is applied

    @classmethod
    def load(cls, config: Path, *, strict: bool = True, keep_last_good: bool = False) -> SpecSet:
        """Load every spec file. `strict` (check, diff, once): any bad file is an error. Otherwise (the daemon)
        a bad file in a conf.d directory is left out and kept in `problems`, as it would be at runtime; only
        a config with no good file at all is an error.

        `keep_last_good` (the daemon): each file read valid is saved as its last good spec, and a file that is
        invalid (or unreadable) is replaced by its saved copy, parsed as if it were at its own path, with the
        error kept in `problems` and the copy's time in `from_saved`. A file that is gone is not replaced: a
        conf.d file removed while snackwatch was stopped is listed in `removed` and its saved copy dropped."""
        config = Path(os.path.abspath(config))
        last_good = LastGood(config) if keep_last_good and not strict else None
        saved = _own_copies(config, last_good.saved()) if last_good is not None else {}
        raw = {}
        specs = {}
        problems: dict[Path, SpecError] = {}
        from_saved: dict[Path, float] = {}
        is_directory = config.is_dir()
        files = spec_files(config)
        if not files:
            raise SpecError(config, None, "no *.yaml spec files in this directory")
        for path in files:
            try:
                data = read_spec_bytes(path, follow=path == config)
                specs[path], raw[path] = parse_spec(data, path), data
            except SpecError as error:
                copy = saved.get(path) if os.path.lexists(path) else None
                spec = _parsed(copy)
                if copy is None or spec is None:
                    if strict or path == config:
                        raise _with_removed_copy(error, saved.get(path)) from None
                    problems[path] = error
                    continue
                specs[path], raw[path], problems[path], from_saved[path] = spec, copy.data, error, copy.applied
        if not specs:
            raise next(iter(problems.values()))
        desired = merge(specs.values())
        for clash in desired.clashes:
            if strict:
                raise clash
            problems.setdefault(clash.path, clash)
        removed = {path: copy.applied for path, copy in saved.items() if path not in files}
        if last_good is not None:
            for path in removed:
                last_good.forget(path)
            for path in specs.keys() - from_saved.keys():
                last_good.save(path, raw[path])
        return cls(config, specs, raw, desired, problems, is_directory, last_good, from_saved, removed)

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

    def reload(self, *, forced: bool, broken: set[Path]) -> Reread:
        """Re-read every spec file; `broken` are the files currently reported as broken or missing."""
        result = Reread()
        try:
            files = self._files()
        except SpecError as error:
            result.problems[self.config] = error
            return result
        specs, raw, changed = dict(self.specs), dict(self.raw), forced
        patches: dict[Path, Patched | None] = {}
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
                patched = patches[path] = self._patched(path, data)
                specs[path] = patched.spec if patched is not None else parse_spec(data, path)
                raw[path] = data
                changed = True
            except SpecError as error:
                result.problems[path] = error
        for path in result.revived:  # back with the bytes of its saved copy: run from disk again
            self.from_saved.pop(path, None)
        if not changed:
            self._clashes_into(self.desired, result)
            return result
        built = self._built_from_old(patches, forced=forced or bool(result.dropped))
        try:
            desired, result.delta = built if built is not None else (merge(specs.values(), self.desired), None)
        except SpecError as error:
            result.problems[error.path] = error
            return result
        self._clashes_into(desired, result)
        self._keep(raw, result)
        self.specs, self.raw, self.desired = specs, raw, desired
        result.desired = desired
        return result

    def _patched(self, path: Path, data: bytes) -> Patched | None:
        """The spec re-read in O(changed) from its last good bytes (patch.py), or None: parse it whole."""
        spec, before = self.specs.get(path), self.raw.get(path)
        if spec is None or before is None or spec.sources():
            return None
        return patch_spec(spec, before, data, DeclaredIn(self.desired, spec))

    def _built_from_old(self, patches: dict[Path, Patched | None], *, forced: bool) -> tuple[Desired, Delta] | None:
        """One file changed and was patched: the new desired state built from the old one (desired.patch)."""
        if forced or len(patches) != 1:
            return None
        patched = next(iter(patches.values()))
        return patch(self.desired, patched.spec, patched.gone, patched.came) if patched is not None else None

    def _files(self) -> list[Path]:
        """The spec files now, of the kind the config was at load: SpecError if the other kind stands there."""
        if not self.is_directory:
            if os.path.isdir(self.config):
                raise SpecError(self.config, None, "is now a directory; it was a spec file when snackwatch started")
            return [self.config]
        if not os.path.isdir(self.config):
            what = "is gone" if not os.path.lexists(self.config) else "is no longer a directory"
            raise SpecError(self.config, None, f"{what}; it was a directory of specs when snackwatch started")
        try:
            return spec_files(self.config)
        except OSError as error:
            raise SpecError(self.config, None, f"cannot list specs: {error.strerror}") from None

    def _keep(self, raw: dict[Path, bytes], result: Reread) -> None:
        """A new desired state is taken: save each file read anew as its last good spec; a file run from a
        saved copy is read from disk again, or gone (dropped)."""
        for path in result.dropped:
            self.from_saved.pop(path, None)
        for path, data in raw.items():
            if data is not self.raw.get(path):
                self.from_saved.pop(path, None)
                if self.last_good is not None:
                    self.unsaved[path] = data
        if self.last_good is not None:
            for path in result.dropped:
                self.unsaved.pop(path, None)
                self.last_good.forget(path)

    def save_last_good(self) -> None:
        """Save the spec files a reload took as their last good specs: called once the new desired state is
        applied, so a 1.3 MB copy written and fsynced never delays the edit it comes from."""
        if self.last_good is not None:
            for path, data in self.unsaved.items():
                self.last_good.save(path, data)
        self.unsaved.clear()

    def _sources_changed(self, path: Path, data: bytes) -> bool:
        """Whether a spec whose bytes did not change copies from a source that did (or can no longer be read:
        SpecError at the spec's line). Only specs with `source:` pay for this: their sources are read again."""
        spec = self.specs.get(path)
        if spec is None or not spec.sources():
            return False
        return parse_spec(data, path) != spec

    @staticmethod
    def _clashes_into(desired: Desired, result: Reread) -> None:
        for clash in desired.clashes:
            result.problems.setdefault(clash.path, clash)


def _own_copies(config: Path, saved: dict[Path, Saved]) -> dict[Path, Saved]:
    """The saved copies of this config's own files: the config itself, or files directly in it."""
    return {path: copy for path, copy in saved.items() if config in (path, path.parent)}


def _parsed(copy: Saved | None) -> Spec | None:
    """A saved copy parsed at its own path (a relative pantry is the spec file's neighbour), None if it fails."""
    if copy is None:
        return None
    try:
        return parse_spec(copy.data, copy.path)
    except SpecError:
        return None


def _with_removed_copy(error: SpecError, copy: Saved | None) -> SpecError:
    """The error of a spec file that cannot be used; if it is gone though a saved copy exists, say why that copy
    is not used."""
    if copy is None or os.path.lexists(error.path):
        return error
    note = f" (it was removed: its last good spec of {applied_text(copy.applied)} is not used in its place)"
    return SpecError(error.path, error.line, error.message + note)
