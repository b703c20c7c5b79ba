"""The status as Prometheus textfile-collector series (what --metrics-file holds)."""

from __future__ import annotations

from typing import Any

from snackwatch import __version__


def metrics_text(status: dict[str, Any], *, up: bool = True) -> str:
    """The status in Prometheus textfile-collector format: one series per snack with a story (repaired, failing or
    in conflict), labelled with its spec, so two specs' `Apple` (or two daemons' files in one collector directory)
    are two series; the daemon-wide series carry the config. `up`: 0 once the daemon stopped (the file stays, so a
    collector tells a stopped daemon from a missing file)."""
    config = f"config={_label(str(status['config']))}"
    stories = sorted(
        (
            (f"spec={_label(str(info.get('spec', '')))},snack={_label(str(info['name']))}", info)
            for info in status["snacks"].values()
            if info.get("repairs") or info.get("state", "ok") != "ok"
        ),
        key=lambda story: story[0],
    )
    lines = [
        "# HELP snackwatch_up Whether the daemon runs (1) or stopped cleanly (0).",
        "# TYPE snackwatch_up gauge",
        f"snackwatch_up{{{config}}} {int(up)}",
        "# HELP snackwatch_build_info The snackwatch version that writes this file.",
        "# TYPE snackwatch_build_info gauge",
        f"snackwatch_build_info{{{config},version={_label(__version__)}}} 1",
        "# HELP snackwatch_repairs_total Snacks restored since the daemon started.",
        "# TYPE snackwatch_repairs_total counter",
        *(f"snackwatch_repairs_total{{{labels}}} {info.get('repairs', 0)}" for labels, info in stories),
        "# HELP snackwatch_snack_failing Whether a snack's repair is failing (1) or not (0).",
        "# TYPE snackwatch_snack_failing gauge",
        *(f"snackwatch_snack_failing{{{labels}}} {int(info['state'] == 'failing')}" for labels, info in stories),
        "# HELP snackwatch_snack_drift An aspect of a snack that differs from the spec (1), by aspect.",
        "# TYPE snackwatch_snack_drift gauge",
        *(
            f"snackwatch_snack_drift{{{labels},aspect={_label(str(aspect['aspect']))}}} 1"
            for labels, info in stories
            for aspect in info.get("drift", ())
        ),
        "# HELP snackwatch_snacks Snacks the daemon keeps, by state.",
        "# TYPE snackwatch_snacks gauge",
        *(
            f"snackwatch_snacks{{{config},state={_label(state)}}} {status['counts'][key]}"
            for state, key in (("ok", "ok"), ("failing", "failing"), ("conflict", "conflicts"), ("drift", "drift"))
            if key in status["counts"]
        ),
        "# HELP snackwatch_spec_valid Whether the spec on disk is valid (0: the last good one is in force).",
        "# TYPE snackwatch_spec_valid gauge",
        f"snackwatch_spec_valid{{{config}}} {int(status['spec']['ok'])}",
        "# HELP snackwatch_last_reconcile_timestamp_seconds When the last full reconcile ran.",
        "# TYPE snackwatch_last_reconcile_timestamp_seconds gauge",
        f"snackwatch_last_reconcile_timestamp_seconds{{{config}}} {status['last_reconcile']:.3f}",
    ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
