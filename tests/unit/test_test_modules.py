"""`make test` runs tests/unit and tests/e2e in one pytest session, where two test modules with the same
basename cannot both be imported (rootdir-relative imports): one would silently shadow the other."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_basename_of_its_own() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
