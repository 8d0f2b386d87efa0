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

"""Files installed with the package (bundled model, configuration): where to find them."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "celegans_autofocus"


def package_file(*parts: str) -> tuple[Path | None, list[Path]]:
    """``share/<package>/<parts>``: the ament share dir, then ``<sys.prefix>/share``, then the source tree.

    Returns (the first that exists or None, every place looked in).
    """
    candidates: list[Path] = []
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory(PACKAGE)).joinpath(*parts))
    except Exception:  # not importable, AMENT_PREFIX_PATH unset or package not indexed: try the next place
        pass
    candidates.append(Path(sys.prefix).joinpath("share", PACKAGE, *parts))
    candidates.append(Path(__file__).resolve().parents[2].joinpath(*parts))
    return next((path for path in candidates if path.is_file()), None), candidates
