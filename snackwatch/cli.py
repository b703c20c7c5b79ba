"""argparse: parse the command line, call into the library, map the outcome to an exit code; nothing else."""

# Each command imports only what it uses (inside its branch): `--version` needs argparse alone, `check` adds
# yaml, `status` reads the daemon's status file, and only `run` imports the daemon (watchdog, loguru, asyncio).
# build_parser() must stay importable with the standard library alone: the man page is built from it.

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from snackwatch import __version__
from snackwatch.choices import BACKENDS, POLL_INTERVAL

TYPE_CHECKING = False  # not typing's: importing typing alone costs --version a tenth of its time
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from snackwatch.desired import Desired
    from snackwatch.errors import SpecError
    from snackwatch.specset import SpecSet

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_ON_LAST_GOOD = 0, 1, 2, 3, 4
SHELLS = ("bash", "zsh")
NAMES_MODE = "_names"  # hidden: `snackwatch _names [-c PATH]` prints the spec's snack names (shell completion)
RESYNC_RANGE = (0.1, 86400.0)  # --resync: not a busy loop, not past a day (a timer that far out is a typo)
POLL_RANGE = (0.1, 3600.0)  # --poll-interval: each poll lists every watched directory; not past an hour


class UsageError(Exception):
    """A command-line value that cannot be used: one line, exit 2."""


def default_config() -> Path:
    """-c, else $SNACKWATCH_CONFIG, else $XDG_CONFIG_HOME/snackwatch/snacks.yaml (~/.config by default)."""
    if os.environ.get("SNACKWATCH_CONFIG"):
        return Path(os.environ["SNACKWATCH_CONFIG"])
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(config_home) / "snackwatch" / "snacks.yaml"


def _seconds_within(text: str, bounds: tuple[float, float], high_said: str) -> float:
    """A finite number of seconds within `bounds` (`high_said`: how the upper bound reads, e.g. "one day")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    low, high = bounds
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(f"{text!r} is not between {low:g} and {high:g} seconds ({high_said})")
    return value


def _resync_seconds(text: str) -> float:
    """--resync: a finite number of seconds within RESYNC_RANGE."""
    return _seconds_within(text, RESYNC_RANGE, "one day")


def _poll_seconds(text: str) -> float:
    """--poll-interval: a finite number of seconds within POLL_RANGE."""
    return _seconds_within(text, POLL_RANGE, "one hour")


def _octal_mode(text: str) -> int:
    """--metrics-mode: permission bits in octal (0644), no set-id or sticky bits."""
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r} (such as 0644)") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file mode between 0000 and 0777")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `snackwatch run: error: ...`, no usage block above it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, sized to the terminal as it would be, without importing shutil (bz2, lzma): every
    add_argument() makes one, so argparse's own sizing costs each command 2 ms."""
    try:
        columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size().columns
    except (ValueError, OSError):
        columns = 80
    return argparse.HelpFormatter(prog, width=columns - 2)


class _Version(argparse.Action):
    """--version as one plain line, without the help formatter (textwrap) argparse's version action uses."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"snackwatch {__version__}")
        parser.exit()


def _run_options(run: argparse.ArgumentParser) -> None:
    """The options of `snackwatch run`."""
    run.add_argument("--dry-run", action="store_true", help="log what would be restored, change nothing")
    run.add_argument("--polling", action="store_true", help="use the polling observer (same as --watcher polling)")
    run.add_argument("--watcher", choices=BACKENDS, default="auto", help="event source (default: inotify on Linux)")
    run.add_argument(
        "--resync", type=_resync_seconds, metavar="SECONDS", help="also run a full pass this often (0.1 to 86400)"
    )
    run.add_argument(
        "--poll-interval",
        type=_poll_seconds,
        default=POLL_INTERVAL,
        metavar="SECONDS",
        help="how often the polling watcher looks, with a full pass (default 1; 0.1 to 3600)",
    )
    levels = ["DEBUG", "INFO", "WARNING", "ERROR"]
    run.add_argument("--log-level", default="INFO", type=str.upper, choices=levels, help="least important to log")
    run.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")
    run.add_argument(
        "--log-file", metavar="PATH", help="also log to this file, in the --log-format (rotated at 10 MB, 5 kept)"
    )
    run.add_argument("--metrics-file", type=Path, metavar="PATH", help="keep a Prometheus textfile up to date")
    run.add_argument(
        "--metrics-mode", type=_octal_mode, default=0o644, metavar="MODE", help="the metrics file's mode (default 0644)"
    )
    run.add_argument(
        "--no-last-good",
        dest="last_good",
        action="store_false",
        help="an invalid spec at start exits 2, even when its last good version was saved",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="snackwatch", description="Keep declared files present, instantly.", formatter_class=_help_formatter
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND", prog="snackwatch"
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, formatter_class=_help_formatter)
        sub.add_argument(
            "-c",
            "--config",
            type=Path,
            metavar="PATH",
            help="spec file or directory (default: $SNACKWATCH_CONFIG, ~/.config/snackwatch/snacks.yaml)",
        )
        return sub

    _run_options(command("run", "watch and keep the pantry in the desired state until stopped"))
    once = command("once", "one full reconcile; exit 0 converged, 1 something left unrepaired")
    once.add_argument("--dry-run", action="store_true", help="print what would be created, change nothing")
    check = command("check", "validate specs (files or conf.d directories); exit 0 valid, 2 any invalid")
    check.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="specs to check besides -c (default: the -c one)"
    )
    command("diff", "show what a reconcile would do; exit 0 nothing to do, 1 drift")
    status = command(
        "status", "what the running daemon is doing; exit 3 if none runs for this config, 4 if on a saved spec"
    )
    status.add_argument("--json", action="store_true", help="the status data as JSON")
    why = command("why", "which spec declares a snack, and what happened to it; exit 1 if none does")
    why.add_argument("name", metavar="NAME", help="a snack name (as in the spec) or a file path")
    prune = command("prune", "list files that left a spec with prune: true; --yes deletes them once")
    prune.add_argument("--yes", action="store_true", help="confirm, past the circuit breaker, once")
    unit = commands.add_parser(
        "unit", help="print the systemd unit (ExecStart= this install) to stdout", formatter_class=_help_formatter
    )
    unit.add_argument("--user", action="store_true", help="the user unit (systemctl --user), not the system one")
    commands.add_parser(
        "schema", help="print the spec's JSON Schema (for editors: see snackwatch(5))", formatter_class=_help_formatter
    )
    completion = commands.add_parser(
        "completion", help="print the shell completion script for bash or zsh", formatter_class=_help_formatter
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; a reader that stops early (`snackwatch status | head -1`) ends it quietly, same exit code."""
    code = _main(argv)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
    return code


def _say(text: str, end: str = "\n") -> None:
    """print() to stdout; a reader gone away (`| head -1`) is no error: the rest of the output is dropped."""
    try:
        print(text, end=end)
    except BrokenPipeError:
        _drop_stdout()


def _drop_stdout() -> None:
    """Python's documented recipe for SIGPIPE: stdout to /dev/null, so no later flush (at exit) fails again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _main(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == [NAMES_MODE]:
        return _snack_names(words[1:])
    if words[:1] != ["run"]:
        return _command(argv)
    import signal  # here: it imports enum, which `--version` has no need of

    previous = _queue_signals()  # first: parsing, importing and building the daemon take a few hundred ms
    try:
        return _command(argv)
    finally:  # back as they were (main() called in process, by tests, leaves no handler of ours behind)
        _QUEUED.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("unit", "schema", "completion"):
        _say(_printed(args), end="")
        return EXIT_OK
    from snackwatch.errors import SnackwatchError, SpecError

    config: Path = args.config or default_config()
    try:
        if args.command == "check":
            return _check([*([args.config] if args.config else []), *args.paths] or [config])
        if args.command == "run":
            return _run(args, config)
        if args.command == "status":
            return _status(config, as_json=args.json)
        from snackwatch.specset import SpecSet

        if args.command == "diff":
            return _diff(SpecSet.load(config, strict=False))
        try:
            desired = SpecSet.load(config).desired
        except SpecError as error:
            if args.command == "why":
                return _why_from_daemon(config, args.name, error)
            if args.command == "prune":
                raise SpecError(
                    error.path,
                    error.line,
                    f"{error.message} (prune decides from the spec on disk: nothing pruned until it is valid)",
                ) from None
            raise
        if args.command == "why":
            return _why(config, desired, args.name)
        if args.command == "prune":
            return _prune(config, desired, confirmed=args.yes)
        return _once(desired, dry_run=args.dry_run)
    except (SpecError, UsageError) as error:
        print(f"snackwatch: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (SnackwatchError, OSError) as error:
        print(f"snackwatch: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _printed(args: argparse.Namespace) -> str:
    """What `unit`, `schema` and `completion` print: texts that need no spec."""
    if args.command == "unit":
        from snackwatch.units import for_this_interpreter

        return for_this_interpreter(user=args.user)
    if args.command == "schema":
        from importlib import resources

        return resources.files("snackwatch").joinpath("spec.schema.json").read_text(encoding="utf-8")
    from snackwatch.completion import completion_script

    return completion_script(build_parser(), args.shell)


def _snack_names(words: list[str]) -> int:
    """The hidden completion mode: the snack names of the config `-c PATH` names (else the default), one a
    line; nothing when it cannot be read. No argparse: a TAB should cost an interpreter and the parser only."""
    from snackwatch.completion import snack_names

    config = str(default_config())
    for index, word in enumerate(words):
        if word in ("-c", "--config") and index + 1 < len(words):
            config = words[index + 1]
        elif word.startswith("--config="):
            config = word.partition("=")[2]
    names = snack_names(config)
    _say("\n".join(names), end="\n" if names else "")
    return EXIT_OK if names else EXIT_FAILURE


def _one_line(error: Exception) -> str:
    """An error as one line: an OSError as `path: No such file or directory`, not `[Errno 2] ...`."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


def _check(configs: list[Path]) -> int:
    """Every config judged whole: an ok line for each valid one, every error (up to a cap) for the others."""
    from snackwatch.checking import check_config, error_lines
    from snackwatch.lint import spec_warnings

    checks = [check_config(config) for config in configs]
    for check in checks:
        for spec in check.desired.specs if check.desired is not None else ():
            for warning in spec_warnings(spec):  # valid, but likely not what was meant: said, exit still 0
                print(warning, file=sys.stderr)
        if check.ok and check.desired is not None:
            pantries = ", ".join(str(spec.pantry) for spec in check.desired.specs)
            _say(f"{check.config}: ok ({check.desired.count} snacks, pantry {pantries})")
    for line in error_lines(checks):
        print(f"snackwatch: {line}", file=sys.stderr)
    return EXIT_OK if all(check.ok for check in checks) else EXIT_USAGE


def _usable_output(path: str, purpose: str, *, replaced: bool) -> None:
    """UsageError unless `path` can be written as a file (`purpose`: the option it came from). `replaced`: it is
    renamed over (so only a regular file may stand there: never /dev/null); else appended to (a FIFO would block)."""
    target = Path(os.path.abspath(path))
    if target.is_dir():
        raise UsageError(f"{purpose} {path}: is a directory, not a file")
    if target.exists() and not target.is_file() and (replaced or target.is_fifo()):
        raise UsageError(f"{purpose} {path}: is not a regular file")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:  # missing directories are created
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{purpose} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{purpose} {path}: permission denied")


def _run(args: argparse.Namespace, config: Path) -> int:
    from snackwatch.daemon import run_daemon
    from snackwatch.logsetup import setup_logging
    from snackwatch.outputs import UnsafeOutput, check_output_file
    from snackwatch.parts import Options

    try:
        if args.log_file is not None:  # the safe walk's refusals first, then what the user may write
            check_output_file(Path(args.log_file), "--log-file")
            _usable_output(args.log_file, "--log-file", replaced=False)
        if args.metrics_file is not None:
            check_output_file(args.metrics_file, "--metrics-file")
            _usable_output(str(args.metrics_file), "--metrics-file", replaced=True)
        setup_logging(args.log_level, args.log_format, args.log_file)
    except UnsafeOutput as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"--log-file {args.log_file}: {error.strerror or error}") from None
    watcher = "polling" if args.polling else args.watcher
    metrics = args.metrics_file and Path(os.path.abspath(args.metrics_file))
    options = Options(
        dry_run=args.dry_run,
        watcher=watcher,
        resync=args.resync,
        poll_interval=args.poll_interval,
        metrics_file=metrics,
        metrics_mode=args.metrics_mode,
        last_good=args.last_good,
    )
    return run_daemon(config, options, after_signals=_replay_signals)  # its handlers in: hand it what came before


_QUEUED: list[int] = []  # signals that arrived before the daemon's handlers were installed


def _queue_signals() -> dict[int, Any]:
    """Queue SIGHUP, SIGTERM and SIGINT until the daemon's handlers take over: a reload asked for (or a stop)
    during the start is applied once the loop runs, where the default action would have killed the process.
    Returns the handlers replaced."""
    import signal

    def queue(signum: int, frame: object) -> None:
        _QUEUED.append(signum)

    return {signum: signal.signal(signum, queue) for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}


def _replay_signals() -> None:
    """Send each queued signal again (once), now that the daemon's handlers are installed."""
    for signum in dict.fromkeys(_QUEUED):
        os.kill(os.getpid(), signum)
    _QUEUED.clear()


def _diff(specs: SpecSet) -> int:
    """What a reconcile would do for the good spec files; a broken conf.d file is named and makes it exit 2."""
    from snackwatch.plan import render
    from snackwatch.survey import drift_line, survey
    from snackwatch.text import name_list

    desired = specs.desired
    found = survey(desired)
    lines = render(found.actions)
    lines += [drift_line(desired.display(entry), entry, aspects) for entry, aspects in found.drifting]
    for what, entries in found.blocked.items():
        names = [desired.display(entry) for entry in entries]
        lines.append(f"! {what}: {len(names)} snack{'' if len(names) == 1 else 's'} not enforced ({name_list(names)})")
    _say("\n".join(lines) if lines else "no drift")
    for problem in specs.problems.values():
        print(f"snackwatch: {problem} (left out: the diff is of the other files)", file=sys.stderr)
    if specs.problems:
        return EXIT_USAGE
    return EXIT_FAILURE if lines else EXIT_OK


def _status(config: Path, *, as_json: bool) -> int:
    """From the daemon's status file alone: whatever state the spec on disk is in, status answers."""
    import json

    from snackwatch import status

    data = _daemon_status(config)
    if data is None:
        print(f"snackwatch: no daemon is running for {config}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    _say(json.dumps(data, indent=1, sort_keys=True) if as_json else status.render_status(data))
    spec = data.get("spec")
    return EXIT_ON_LAST_GOOD if isinstance(spec, dict) and spec.get("last_good") else EXIT_OK


def _daemon_status(config: Path) -> dict[str, object] | None:
    """The status file of the daemon running for `config`, or None if none runs (a stale file is not shown)."""
    from snackwatch import status
    from snackwatch.lock import running_pid

    pid = running_pid(config)  # first: it refuses a runtime directory that is not safe
    return status.read_status(config) if pid is not None else None


def _why(config: Path, desired: Desired, name: str) -> int:
    from snackwatch import status
    from snackwatch.survey import look, why_lines

    text, found = status.why(
        name, desired, _daemon_status(config), lambda entry: why_lines(entry, look(desired, entry))
    )
    if not found:  # a file that left a `prune: true` spec, perhaps held back by the circuit breaker
        from snackwatch.prune import why_left

        text = why_left(config, desired, name) or text
    _say(text)
    return EXIT_OK if found else EXIT_FAILURE


def _why_from_daemon(config: Path, name: str, problem: SpecError) -> int:
    """The spec on disk cannot be read: answer from the running daemon's status, or give the spec's error."""
    from snackwatch import status

    data = _daemon_status(config)
    if data is None:
        raise problem
    text, found = status.why_from_status(name, data, str(problem))
    _say(text)
    return EXIT_OK if found else EXIT_FAILURE


def _prune(config: Path, desired: Desired, *, confirmed: bool) -> int:
    from snackwatch import prune

    if confirmed:
        _say(prune.confirm_prune(config, desired))
        return EXIT_OK
    pending = [file for files in prune.prune_pending(config, desired).values() for file in files]
    _say("\n".join(f"would prune {file}" for file in pending) or "nothing to prune")
    return EXIT_OK


def _once(desired: Desired, *, dry_run: bool) -> int:
    from snackwatch.drift import changes, put_back, split
    from snackwatch.errors import error_text
    from snackwatch.reconcile import Status, reconcile_all

    unrepaired = 0
    outcomes = reconcile_all(desired, dry_run=dry_run)
    if not any(outcome.status is not Status.PRESENT or outcome.drift for outcome in outcomes):
        _say(f"nothing to do: all {desired.count} snacks are in place")
    blocked: dict[str, list[str]] = {}  # what is in the way -> the snacks it keeps out: said once
    for outcome in outcomes:
        name = desired.display(outcome.entry)
        if outcome.blocked:
            blocked.setdefault(outcome.reason or f"a {outcome.kind.value if outcome.kind else '?'}", []).append(name)
            unrepaired += 1
            continue
        if outcome.status is Status.CREATED:
            _say(f"created {name}" + ("/" if outcome.entry.snack.type == "directory" else ""))
        elif outcome.status is Status.WOULD_CREATE:
            _say(f"would create {name}")
            unrepaired += 1
        elif outcome.status is Status.CONFLICT:
            kind = outcome.reason or f"a {outcome.kind.value if outcome.kind else 'something'}"
            print(f"conflict: {kind} stands where {name} should be", file=sys.stderr)
            unrepaired += 1
        elif outcome.status is Status.FAILED:
            print(f"cannot create {name}: {error_text(outcome.error)}", file=sys.stderr)
            unrepaired += 1
        elif outcome.status is Status.CORRECTED:
            _say(f"corrected {name}: {put_back(outcome.corrected)}")
        if outcome.drift and outcome.status is not Status.FAILED:
            enforced, reported = split(outcome.entry.snack, outcome.drift)
            if enforced:  # a dry run: put back by a real one
                _say(f"would correct {name}: {changes(enforced)}")
                unrepaired += 1
            if reported:
                _say(f"~ {name}: {changes(reported)} (not enforced: left as is)")
    for what, names in blocked.items():
        from snackwatch.text import name_list

        count = f"{len(names)} snack{'' if len(names) == 1 else 's'}"
        print(f"conflict: {what}: {count} not created ({name_list(names)})", file=sys.stderr)
    return EXIT_FAILURE if unrepaired else EXIT_OK
