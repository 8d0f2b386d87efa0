"""ament_pep257 on the Python sources.

Convention: ament's (pydocstyle's checks less D100-D107, D203, D212, D404) and D213 also ignored, so a
multi-line docstring's summary may start on the opening line (the house style) or the next one.
"""
from __future__ import annotations

import pytest

from lint_paths import importable, PYTHON_PATHS

pytestmark = pytest.mark.skipif(not importable("ament_pep257"),
                                reason="no ament_pep257 (apt: ros-<distro>-ament-pep257; pip: requirements-lint.txt)")


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    from ament_pep257.main import main

    assert main(argv=[*PYTHON_PATHS, "--add-ignore", "D213"]) == 0, "found code style errors / warnings"
