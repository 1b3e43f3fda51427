"""The user's calibration samples checked the moment they arrive (the bot answers at once, not after the
queue): read exactly as the conversion will read them, with the same limits and refusals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.calibration import InputSlot, load_calibration

# Images for a float input are read at this range while the user has not said theirs yet: the range changes
# the values only, not whether the images can be read or how many there are.
RANGE_WHILE_UNKNOWN = "0,1"


@dataclass(frozen=True)
class SamplesCheck:
    samples: int
    classes: int  # class folders the images sit in (0: not one folder per class)
    needs_input_range: bool  # images for a float input with no range given: the user must say how pixels map


def check_samples(
    path: Path, slots: Sequence[InputSlot], input_range: str | None, work_dir: Path, max_mb: float
) -> SamplesCheck:
    """How many samples `path` holds for `slots`, or BadOptionsError saying in one line what is wrong."""
    calibration = load_calibration(path, slots, input_range or RANGE_WHILE_UNKNOWN, work_dir, max_mb)
    takes_floats = any(np.issubdtype(np.dtype(slot.dtype), np.floating) for slot in slots)
    return SamplesCheck(
        samples=len(calibration.samples),
        classes=len(set(calibration.classes)),
        needs_input_range=calibration.from_images and takes_floats and input_range is None,
    )
