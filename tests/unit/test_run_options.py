"""Options of `hemostat run` that shape what a user sees: the log format, refused port clashes."""

from __future__ import annotations

import json
import logging

import pytest

from hemostat.cli import main
from hemostat.runner import configure_logging


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_are_one_object_per_line_with_severity_and_time(root_logger, capsys) -> None:
    configure_logging("WARNING", "json")
    logging.getLogger("hemostat.test").info("dropped: below the level")
    logging.getLogger("hemostat.test").warning("rolled back %s", "shop/orders")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["message"] == "rolled back shop/orders"
    assert record["severity"] == "warn"
    assert record["timestamp"]


def test_the_same_port_for_metrics_and_health_is_refused(capsys) -> None:
    code = main(["run", "--metrics-port", "9000", "--health-port", "9000"])
    assert code != 0
    assert "--metrics-port and --health-port are both 9000" in capsys.readouterr().err
