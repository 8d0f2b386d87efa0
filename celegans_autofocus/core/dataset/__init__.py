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

"""The z-stack dataset: layout on disk, image files, ``labels.csv``, labelling, splits and writers.

Layout::

    DATASET/plates/<plate>/<stack>/z_<index>.png|.tif|.tiff   one image per sampled motor step
    DATASET/plates/<plate>/<stack>/stack.yaml                 optional (step_um, best_index, parent, ...)
    DATASET/labels.csv                                        written by labelling.label_dataset

Modules: :mod:`.io` (read/write one image), :mod:`.layout` (find plates and stacks, ``stack.yaml``),
:mod:`.labels` (``labels.csv``, a stack's best index, focus-curve checks), :mod:`.labelling` (label a
dataset), :mod:`.splits` (train/validation by plate), :mod:`.writer` (write a stack directory
atomically), :mod:`.crops` (crop stacks around each worm), :mod:`.sweep` (a stack recorded one z at a
time by ``acquire``/``bag-to-dataset``: each image kept as it comes, resumable).

Conventions (the one place they are written down):

- ``z_index`` is in motor steps (1 step = ``step_um`` um; :data:`core.sensor.STEP_UM` when absent).
  A stack may sample every k-th step: the stride is the gcd of the index differences, and an index
  missing from that grid is a *gap* (reported; the stack is still labelled).
- ``offset_steps = best_index - z_index``: the signed motor steps that bring an image into focus;
  positive means move to larger z.
- ``best_index``: a ``best_index`` given in ``stack.yaml`` (hand label or known truth) wins unless
  ``use_stack_best=False`` (label as the paper does); otherwise the labeller's best z: by default
  ``auto`` (:func:`core.focus.best_plane`: the dark-detail peak, a phase object's contrast dip, or an
  emitter's contrast peak, by contrast mode), or the maximum of one named focus measure. The
  measures are computed either way, the value the best z was read from is stored per image in
  ``measure_value`` (``measure`` = ``auto:<measure>`` or the measure), and the stack is checked
  either way (``ambiguous``). ``true_best_index`` is the simulator's truth.
- ``kind`` is ``crop`` when ``stack.yaml`` names a ``parent`` stack, else ``full``; ``fov_px`` is
  ``stack.yaml``'s ``fov_px`` (empty when absent).
- ``ambiguous`` = 1 (flagged) when the best z cannot be trusted: flat curve (range within noise), peak
  at the end of the stack, a second separated peak of similar height, a missing/skipped image next to
  the peak, or (``auto``) the other measures do not back it within ``agree_steps`` (8 by default).
- Colour images become grayscale by BT.601 luma (:func:`core.images.array_to_gray`), rounded back
  to the file's integer type.

Failure policy (nothing already labelled is lost):

- A bad file (unreadable, corrupt, empty, non-finite, odd size) is reported by name and skipped;
  the stack is labelled from its other images.
- A bad stack (duplicate z index, bad ``stack.yaml``, too few readable images) is reported and its
  rows from the previous ``labels.csv`` are kept unchanged.
- ``labels.csv`` and stack directories are replaced atomically; a ``labels.csv`` that cannot be
  parsed stops the run before anything is written.
- Stacks whose files, ``stack.yaml`` and measure are unchanged since the last ``labels.csv`` reuse
  the measure values stored there instead of reading the images again (``force=True`` recomputes);
  single measures only, since ``auto`` reads three values per image and ``labels.csv`` keeps one.
"""
