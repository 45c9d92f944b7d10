"""Print the runtime dependencies pinned at their floors (pip constraints): `make install` tests exactly those."""

import re
import tomllib
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
for dep in pyproject["project"]["dependencies"]:
    print(re.sub(r">=([^,]+),.*", r"==\1", dep))
