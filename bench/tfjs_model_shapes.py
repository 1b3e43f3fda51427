"""What a user has to say for each real TF.js model in tests/data: the shapes TF.js leaves unknown.

Shared by the tests and bench/tfjs_models.py, so both convert the models the same way.
"""

from __future__ import annotations

RVM_STATES = ("r1i", "r2i", "r3i", "r4i")
# rvm's recurrent states start as scalar zeros (as in its web demo) and its downsample ratio is a scalar.
SHAPES: dict[str, tuple[str, ...]] = {
    "faceboxes": ("image_tensor:1,128,128,3",),
    "rvm": ("src:1,128,128,3", "downsample_ratio:scalar", *(f"{state}:scalar" for state in RVM_STATES)),
}
