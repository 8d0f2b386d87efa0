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

"""Writing a stack directory so that it appears whole or not at all."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml

from .io import image_suffix, write_image


class StackWriter:
    """Writes the stack directory ``path``: its ``stack.yaml`` (``meta``) and ``z_<index>`` images.

    Files go to a hidden directory beside ``path``; :meth:`commit` puts it in place of ``path``
    (replacing an old stack there), :meth:`discard` removes it. As a context manager it commits when
    the block ends normally and discards when the block raises.
    """

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = Path(path)
        self.tmp = self.path.parent / f".{self.path.name}.tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)  # left over from a killed run
        self.tmp.mkdir(parents=True)
        (self.tmp / "stack.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, default_flow_style=None))

    def add(self, z_index: int, gray: np.ndarray) -> Path:
        """Write the image of ``z_index`` (PNG for 8/16-bit, else TIFF); returns its final path."""
        name = f"z_{int(z_index)}{image_suffix(gray)}"
        write_image(self.tmp / name, np.ascontiguousarray(gray))
        return self.path / name

    def commit(self) -> None:
        old = self.path.parent / f".{self.path.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.path.exists():
            self.path.rename(old)
        self.tmp.rename(self.path)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "StackWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
