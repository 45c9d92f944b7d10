"""The floor of each runtime dependency is the version the tests ran on.

A floor below what CI installs is a promise nobody tested (issue #10 found the leader election
using an API that exists only in the newest `kubernetes` the pin allowed). `make install`
installs exactly the floors (hack/floors.py as pip constraints), so an upstream release cannot
turn this red; raising a floor is a deliberate edit of pyproject.toml.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_runtime_floor_is_the_installed_version() -> None:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    untested = []
    for dep in deps:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([^,]+),<.+", dep)
        assert match, f"{dep}: expected 'name>=floor,<ceiling'"
        name, floor = match.groups()
        if version(name) != floor:
            untested.append(f"{name}: floor {floor}, tested {version(name)}")
    assert not untested, untested
