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
