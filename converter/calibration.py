"""The samples a full-integer (int8) conversion is calibrated on: the user's own, from an .npz/.npy of input
arrays or a .zip/.tar.gz of JPEG/PNG images; never random data, which would set each tensor's int8 range for
inputs the model never sees.

Everything here reads an untrusted upload: sizes are bounded before anything is decoded or allocated."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from converter.archive import ArchiveLimits, archive_kind, extract_archive
from converter.errors import BadOptionsError
from converter.options import INPUT_RANGES
from converter.units import format_size

MAX_SAMPLES = 2_000
# Folders and the odd stray file beside the images; more members than this is not a calibration set.
MAX_ARCHIVE_MEMBERS = 2 * MAX_SAMPLES
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_IMAGE_PIXELS = 40_000_000  # checked on the header, before a decompression bomb is decoded
NPY_MAGIC = b"\x93NUMPY"
MAX_UNPACKED_BYTES = ArchiveLimits().max_total_bytes

Sample = dict[str, NDArray[Any]]


@dataclass(frozen=True)
class InputSlot:
    """One model input as the samples must fit it: its key, dtype and full shape (-1 where any size goes)."""

    key: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def batch(self) -> int:
        return max(self.shape[0], 1) if self.shape else 1

    def describe(self) -> str:
        dims = ",".join("?" if d < 0 else str(d) for d in self.shape[1:])
        return f"{self.dtype} [N{',' + dims if dims else ''}]" if self.shape else f"{self.dtype} [N]"


@dataclass(frozen=True)
class CalibrationSet:
    """The samples, each a dict of every input at its own shape; `classes` holds each sample's class folder
    when images sat in one folder per class (else it is empty)."""

    samples: tuple[Sample, ...]
    classes: tuple[str, ...] = ()
    from_images: bool = False  # decoded from JPEG/PNG images, not given as arrays

    def first(self, count: int) -> list[Sample]:
        return list(self.samples[:count])

    def representative_dataset(self) -> Iterator[Sample]:
        """What TFLiteConverter.representative_dataset calls, once per calibration pass."""
        yield from self.samples


def load_calibration(
    path: Path, slots: Sequence[InputSlot], input_range: str | None, work_dir: Path, max_mb: float
) -> CalibrationSet:
    """The samples in `path` for inputs `slots`, or BadOptionsError saying in one line what is wrong."""
    size = path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise BadOptionsError(
            f"the calibration file is {format_size(size)}; the limit is {max_mb:g} MB "
            "(CONVBOT_MAX_CALIBRATION_MB): send fewer samples"
        )
    with path.open("rb") as head:
        is_npy = head.read(len(NPY_MAGIC)) == NPY_MAGIC
    if is_npy:
        return _from_arrays({"": _read_npy_file(path)}, slots)
    kind = archive_kind(path)
    if kind == "zip" and _is_npz(path):
        return _from_arrays(_read_npz(path), slots)
    if kind is None:
        raise BadOptionsError("the calibration file is not an .npz, an .npy, a .zip or a .tar.gz")
    folder = work_dir / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    extract_archive(path, folder, ArchiveLimits(max_entries=MAX_ARCHIVE_MEMBERS))
    return _from_images(folder, slots, input_range)


# ---------------------------------------------------------------- arrays


def _is_npz(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return bool(names) and all(name.endswith(".npy") for name in names)


def _read_npy_file(path: Path) -> NDArray[Any]:
    with path.open("rb") as stream:
        return _read_npy(stream, path.stat().st_size, path.name)


def _read_npz(path: Path) -> dict[str, NDArray[Any]]:
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        # Arrays compress far better than models (a batch of dark images): an absolute cap, not a ratio.
        if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
            raise BadOptionsError(
                f"the .npz unpacks to more than {format_size(MAX_UNPACKED_BYTES)}: send fewer samples"
            )
        for info in infos:
            with archive.open(info) as stream:  # zipfile stops at the member's declared size
                arrays[info.filename.removesuffix(".npy")] = _read_npy(stream, info.file_size, info.filename)
    return arrays


def _read_npy(stream: IO[bytes], available: int, name: str) -> NDArray[Any]:
    """One array, refused before allocation when its header promises more bytes than the file holds; never
    unpickled (that would run code from the file)."""
    fmt: Any = np.lib.format  # untyped in numpy's stubs
    try:
        version = fmt.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"its format version {version} is not 1.0 or 2.0")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
        if dtype.hasobject:
            raise ValueError("it holds Python objects, not numbers")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if size > available:
            raise ValueError("its header promises more data than it holds")
        data = stream.read(size)
        if len(data) != size:
            raise ValueError("it is truncated")
    except ValueError as error:
        raise BadOptionsError(f"cannot read the calibration array {name}: {error}") from None
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")


def _from_arrays(arrays: Mapping[str, NDArray[Any]], slots: Sequence[InputSlot]) -> CalibrationSet:
    """Arrays by input key (or one unnamed array for a one-input model), samples along the first axis."""
    if len(slots) == 1 and len(arrays) == 1:
        by_key = {slots[0].key: next(iter(arrays.values()))}
    else:
        missing = [slot.key for slot in slots if slot.key not in arrays]
        if missing:
            has = ", ".join(name or "one unnamed array" for name in arrays)
            raise BadOptionsError(f"the calibration file lacks input {', '.join(missing)} (it has {has})")
        by_key = {slot.key: arrays[slot.key] for slot in slots}
    counts = {slot.key: _sample_count(by_key[slot.key], slot) for slot in slots}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{key} {count}" for key, count in counts.items())
        raise BadOptionsError(f"the calibration inputs hold different numbers of samples: {shown}")
    count = next(iter(counts.values()))
    _check_count(count, "samples")
    return CalibrationSet(
        tuple({slot.key: _sample(by_key[slot.key], slot, index) for slot in slots} for index in range(count))
    )


def _sample_count(array: NDArray[Any], slot: InputSlot) -> int:
    """How many samples `array` holds for `slot` (N along the first axis, in chunks of the input's batch)."""
    wanted = slot.shape[1:]
    fits_shape = array.ndim == len(slot.shape) and all(
        d < 0 or d == got for d, got in zip(wanted, array.shape[1:], strict=True)
    )
    if not slot.shape:  # a scalar input: one number per sample
        fits_shape = array.ndim == 1
    if not fits_shape or not _dtype_fits(array.dtype, np.dtype(slot.dtype)) or array.shape[0] % slot.batch:
        got = f"{array.dtype} [{','.join(map(str, array.shape))}]"
        raise BadOptionsError(
            f"the calibration samples do not fit input {slot.key}: expected {slot.describe()}, got {got}"
        )
    return int(array.shape[0]) // slot.batch


def _dtype_fits(got: np.dtype[Any], wanted: np.dtype[Any]) -> bool:
    for kind in (np.floating, np.integer, np.bool_):
        if np.issubdtype(wanted, kind):
            return bool(np.issubdtype(got, kind))
    return got == wanted


def _sample(array: NDArray[Any], slot: InputSlot, index: int) -> NDArray[Any]:
    if not slot.shape:
        return np.asarray(array[index], dtype=slot.dtype)
    return np.ascontiguousarray(array[index * slot.batch : (index + 1) * slot.batch], dtype=slot.dtype)


def _check_count(count: int, what: str) -> None:
    if count == 0:
        raise BadOptionsError(f"the calibration file holds no {what}")
    if count > MAX_SAMPLES:
        raise BadOptionsError(
            f"the calibration file holds {count:,} {what}; at most {MAX_SAMPLES:,} are used: send fewer"
        )


# ---------------------------------------------------------------- images


def _from_images(folder: Path, slots: Sequence[InputSlot], input_range: str | None) -> CalibrationSet:
    paths = _image_paths(folder)
    _check_count(len(paths), "JPEG or PNG images")
    slot = _image_slot(slots)
    is_float = np.issubdtype(np.dtype(slot.dtype), np.floating)
    if is_float and input_range is None:
        raise BadOptionsError(
            "how do your model's inputs see pixels? give --input-range 0,1, -1,1 or 0,255 (for 0..255 pixels)"
        )
    low, high = INPUT_RANGES[input_range] if is_float and input_range else (0.0, 255.0)
    samples = tuple({slot.key: _pixels_to_input(_decode(path, folder, slot), low, high, slot.dtype)} for path in paths)
    return CalibrationSet(samples, _class_folders(paths, folder), from_images=True)


def _image_paths(folder: Path) -> list[Path]:
    """The images, in a stable order; hidden files and macOS's __MACOSX copies are not images."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith((".", "__MACOSX")) for part in path.relative_to(folder).parts)
    )


def _image_slot(slots: Sequence[InputSlot]) -> InputSlot:
    """The one input images go to: [1,H,W,1] (grayscale) or [1,H,W,3] (RGB), H and W known."""
    if len(slots) != 1:
        raise BadOptionsError(
            f"images calibrate a model with one input; this one has {len(slots)}: give an .npz keyed by input name"
        )
    slot = slots[0]
    if len(slot.shape) != 4 or slot.shape[0] != 1 or slot.shape[3] not in (1, 3) or min(slot.shape[1:3]) <= 0:
        raise BadOptionsError(
            f"images fit an input shaped [1,H,W,1] or [1,H,W,3]; input {slot.key} is {slot.describe()}: "
            "give an .npz of its samples instead"
        )
    return slot


def _decode(path: Path, folder: Path, slot: InputSlot) -> NDArray[np.uint8]:
    """The image resized to the input's H x W, with its channels (1: grayscale, 3: RGB), as 0..255 pixels."""
    from PIL import Image, UnidentifiedImageError

    name = str(path.relative_to(folder))
    height, width, channels = slot.shape[1], slot.shape[2], slot.shape[3]
    try:
        with Image.open(path, formats=["JPEG", "PNG"]) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise BadOptionsError(
                    f"the image {name} is {image.width}x{image.height} pixels; at most {MAX_IMAGE_PIXELS:,} are read"
                )
            mode = "L" if channels == 1 else "RGB"
            image.draft(mode, (width, height))  # a JPEG decodes at a reduced size: faster, less memory
            pixels = np.asarray(image.convert(mode).resize((width, height), Image.Resampling.BILINEAR))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:  # PIL's words for a damaged image
        raise BadOptionsError(f"the image {name} cannot be read as a JPEG or PNG: {error}") from None
    return pixels.reshape(1, height, width, channels).astype(np.uint8)


def _pixels_to_input(pixels: NDArray[np.uint8], low: float, high: float, dtype: str) -> NDArray[Any]:
    if not np.issubdtype(np.dtype(dtype), np.floating):
        return pixels.astype(dtype)  # an integer input takes the pixels as they are
    return (pixels.astype(np.float32) * ((high - low) / 255.0) + low).astype(dtype)


def _class_folders(paths: Sequence[Path], folder: Path) -> tuple[str, ...]:
    """Each image's class: its folder, when every image sits one level below a common root, in at least two
    folders (a zip made of a folder adds its own name on top, which is stripped)."""
    parents = [path.parent.relative_to(folder).parts for path in paths]
    common = 0
    while all(len(parts) > common for parts in parents) and len({parts[common] for parts in parents}) == 1:
        common += 1
    rest = [parts[common:] for parts in parents]
    if any(len(parts) != 1 for parts in rest) or len({parts[0] for parts in rest}) < 2:
        return ()
    return tuple(parts[0] for parts in rest)
