# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""ament_copyright on the Python sources: each file starts with the Apache-2.0 header (package.xml's license)."""
from __future__ import annotations

import pytest

from lint_paths import importable, PYTHON_PATHS

pytestmark = pytest.mark.skipif(not importable("ament_copyright"),
                                reason="no ament_copyright (apt: ros-<distro>-ament-copyright; no wheel on PyPI)")


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    from ament_copyright.main import main

    assert main(argv=PYTHON_PATHS) == 0, "found errors"
