"""A chart per signal for people: its values from Prometheus around the Incident, the threshold, and a
marker at Detected, each mitigation step and Resolved, labelled with its UTC time.

matplotlib (the optional `charts` extra, headless: the Agg backend), PNG and SVG side by side. Every
marker line carries its time as its SVG id (`marker-<time>`), so the picture can be checked against
the timeline it was drawn from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .clock import now_iso, parse_iso
from .errors import UserError

MARGIN = timedelta(minutes=15)  # before Detected and after Resolved
SIZE = (10.0, 4.0)  # inches, at 100 dpi: 1000 x 400 pixels
DPI = 100


@dataclass(frozen=True)
class Marker:
    at: datetime
    label: str


def markers(status: dict[str, Any]) -> list[Marker]:
    """Detected, each step taken (its action and result), and Resolved, from the Incident's status."""
    out = []
    if status.get("detectedAt"):
        out.append(Marker(parse_iso(status["detectedAt"]), "Detected"))
    for a in status.get("actions") or []:
        out.append(Marker(parse_iso(a["at"]), f"{a.get('action') or a['step']} {a['result']}"))
    if status.get("resolvedAt"):
        out.append(Marker(parse_iso(status["resolvedAt"]), "Resolved"))
    return sorted(out, key=lambda m: m.at)


def window(status: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """From 15 minutes before Detected to 15 minutes after Resolved (or now, if sooner)."""
    start = parse_iso(status.get("detectedAt") or now_iso(now)) - MARGIN
    end = parse_iso(status["resolvedAt"]) + MARGIN if status.get("resolvedAt") else now
    return start, min(end, now)


def threshold_of(text: str) -> float | None:
    """The number in a threshold as the status writes it ('> 0.05', '< 200')."""
    found = re.search(r"-?\d+(\.\d+)?(e-?\d+)?", text)
    return float(found.group(0)) if found else None


def draw(
    signal: str,
    series: list[list[tuple[datetime, float]]],
    threshold: str,
    marks: list[Marker],
    out: Path,
) -> list[Path]:
    """Write `out`.png and `out`.svg; returns their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless: no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("charts need matplotlib: pip install 'hemostat[charts]'") from None
    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    try:
        for points in series:
            ax.plot([t for t, _ in points], [v for _, v in points], linewidth=1.2)
        level = threshold_of(threshold)
        if level is not None:
            ax.axhline(level, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold}")
        top = ax.get_ylim()[1]
        same: dict[datetime, list[str]] = {}  # markers in one second share a line and a label
        for m in marks:
            same.setdefault(m.at, []).append(m.label)
        for at, labels in same.items():
            ax.axvline(at, color="0.35", linestyle=":", linewidth=1, gid=f"marker-{now_iso(at)}")
            said = f" {at:%H:%M:%S} {', '.join(labels)}"
            ax.text(at, top, said, rotation=90, va="top", ha="right", fontsize=7, color="0.25")
        ax.set_title(f"{signal} (UTC)")
        ax.legend(loc="upper left", fontsize=8)
        fig.autofmt_xdate()
        paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
        for path in paths:
            fig.savefig(path, dpi=DPI)
        return paths
    finally:
        plt.close(fig)
