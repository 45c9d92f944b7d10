"""The rooms of the code: importing the pure planner imports no I/O library (import-linter checks what a
module imports; this checks what importing it runs, package __init__ modules included)."""

from __future__ import annotations

import subprocess
import sys

IO_LIBRARIES = ("kopf", "kubernetes", "httpx", "openfeature", "prometheus_client", "hemostat.kube")


def test_importing_the_planner_imports_no_io_library() -> None:
    probe = (
        "import sys, hemostat.cycle.plan, hemostat.decide.lifecycle, hemostat.decide.health; "
        f"print(','.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing the planner imported {loaded}"
