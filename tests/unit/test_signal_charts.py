"""Signal charts (charts.py, commands.signal_charts): markers from the timeline, and a postmortem that
says so when Prometheus no longer holds the data instead of drawing an empty chart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from loopback import Quiet, serving

from hemostat import charts, commands

STATUS = {
    "detectedAt": "2026-12-06T14:00:04Z",
    "resolvedAt": "2026-12-06T14:03:00Z",
    "actions": [{"step": "rollback", "action": "rollback", "result": "Succeeded", "at": "2026-12-06T14:00:06Z"}],
    "evidence": [{"signal": "error-rate", "value": "0.31", "threshold": "> 0.05", "query": "errors"}],
}


def test_markers_and_window_come_from_the_incident() -> None:
    marks = charts.markers(STATUS)
    assert [(m.at.strftime("%H:%M:%S"), m.label) for m in marks] == [
        ("14:00:04", "Detected"),
        ("14:00:06", "rollback Succeeded"),
        ("14:03:00", "Resolved"),
    ]
    start, end = charts.window(STATUS, datetime(2026, 12, 7, tzinfo=UTC))
    assert (start.strftime("%H:%M:%S"), end.strftime("%H:%M:%S")) == ("13:45:04", "14:18:00")
    assert charts.threshold_of("> 0.05") == 0.05 and charts.threshold_of("< 200") == 200.0


def test_no_data_left_in_prometheus_is_said_not_drawn(tmp_path: Path) -> None:
    class Empty(Quiet):
        def do_GET(self) -> None:
            body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    incident = {"metadata": {"name": "web-1", "namespace": "shop"}, "status": STATUS}
    with serving(Empty) as url:
        ((line, png),) = commands.signal_charts(incident, url, tmp_path / "pm.md")
    assert png is None and not list(tmp_path.iterdir())
    assert line == (
        "No chart for error-rate: Prometheus holds no data for it between 2026-12-06T13:45:04Z and "
        "2026-12-06T14:18:00Z (past its retention, or the series is gone)."
    )
