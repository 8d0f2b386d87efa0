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

"""Training/validation splits by plate, so that no plate's worms are seen on both sides."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def split_by_plate(plates: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split plate ids into (train, validation) so that no plate is in both.

    At least one plate goes to each side; the choice is a seeded shuffle of the sorted unique ids.
    Raises ValueError when fewer than two plates exist or ``val_fraction`` is not in (0, 1).
    """
    unique = sorted(set(plates))
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if len(unique) < 2:
        raise ValueError(f"cannot split {len(unique)} plate(s) {unique} into training and validation "
                         "without leaking a plate: need at least 2 plates")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = min(max(1, round(val_fraction * len(unique))), len(unique) - 1)
    val = sorted(unique[i] for i in order[:n_val])
    train = sorted(unique[i] for i in order[n_val:])
    return train, val
