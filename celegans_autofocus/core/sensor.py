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

"""The imaging hardware the defaults describe; the one place these numbers are written down.

Raspberry Pi HQ camera (IMX477) behind a 1x lens, and a NEMA 17 focus motor on a 1 mm lead screw.

Lengths in px elsewhere in the package ("full-frame px") are pixels of this sensor's full frame.
A dataset or model that records its own ``step_um`` / ``um_per_px`` (``stack.yaml``, ONNX metadata)
overrides these defaults.
"""
from __future__ import annotations

#: full sensor frame, (width, height) in px
FULL_FRAME_WH_PX = (2592, 1944)
#: object-side pixel size of the full frame (1.55 um sensor pixels, 1x magnification)
UM_PER_PX = 1.55
#: focus travel of one motor step (1 mm lead screw, 200 steps per turn)
STEP_UM = 5.0
