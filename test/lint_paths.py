"""What the ament lint tests check: the package, its tests, launch files, benchmarks and setup.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_PATHS = [str(ROOT / p) for p in ("celegans_autofocus", "test", "launch", "benchmarks", "setup.py")]


def importable(module: str) -> bool:
    """Whether ``module`` can be imported here (the linters come from apt on ROS, requirements-lint.txt else)."""
    return importlib.util.find_spec(module) is not None
