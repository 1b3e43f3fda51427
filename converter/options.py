"""What a user asks of a conversion, as small typed values, and the parsing of the
text forms the CLI and the bot accept (`name:1,224,224,3`, `float16`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from converter.errors import BadOptionsError
from converter.formats import TFJS_QUANTIZATIONS, TFLITE_QUANTIZATIONS, Quantization, Target

DEFAULT_TIMEOUT_SECONDS = 600.0
SCALAR_WORDS = ("scalar", "()", "[]")  # how a shape of rank 0 is written
DEFAULT_MAX_CALIBRATION_MB = 50.0  # CONVBOT_MAX_CALIBRATION_MB
# How image pixels (0..255) map to a model's input, as the user writes it.
INPUT_RANGES: dict[str, tuple[float, float]] = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0), "0,255": (0.0, 255.0)}
TFJS_TARGETS = (Target.TFJS, Target.TFJS_LAYERS)
# A job that converts every quantization variant: keep per target the smallest passing file, or every file.
QUANT_SEARCHES = ("auto", "compare")


@dataclass(frozen=True)
class ConversionOptions:
    """Targets, chosen nodes, shapes and quantization; empty inputs/outputs mean the suggested ones."""

    targets: tuple[Target, ...] = (Target.TFLITE, Target.TFJS)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    tflite_quantization: Quantization = Quantization.NONE
    tfjs_quantization: Quantization = Quantization.NONE
    verify: bool = True  # run the source and every artifact on the same inputs and compare
    verify_inputs: str | None = None  # a .npy (one input) or .npz (by input name) to verify on
    warnings: tuple[str, ...] = field(default=(), compare=False)
    calibration: str | None = None  # int8: the user's samples, an .npz/.npy or an archive of images
    input_range: str | None = None  # int8 from images: a key of INPUT_RANGES
    max_calibration_mb: float = DEFAULT_MAX_CALIBRATION_MB
    quant_search: str = ""  # a job's "auto" or "compare" (converter/quant_search.py); "" converts these options

    def __post_init__(self) -> None:
        if not self.targets:
            raise BadOptionsError("choose at least one target: tflite, tfjs")
        if self.tflite_quantization not in TFLITE_QUANTIZATIONS:
            raise BadOptionsError(f"TFLite takes quantization {_names(TFLITE_QUANTIZATIONS)}")
        if self.tfjs_quantization.is_full_integer and any(t in TFJS_TARGETS for t in self.targets):
            raise BadOptionsError(
                f"{self.tfjs_quantization.value} is for TFLite only (TF.js has no integer kernels): "
                f"use --to tflite, or tflite:{self.tfjs_quantization.value},tfjs:uint8"
            )
        if self.tfjs_quantization not in TFJS_QUANTIZATIONS and not self.tfjs_quantization.is_full_integer:
            raise BadOptionsError(f"TF.js takes quantization {_names(TFJS_QUANTIZATIONS)}")
        self._check_calibration()
        self._check_quant_search()

    @property
    def needs_calibration(self) -> bool:
        """A full-integer .tflite is asked for: it is calibrated on the user's samples."""
        return self.tflite_quantization.is_full_integer and Target.TFLITE in self.targets

    def _check_calibration(self) -> None:
        if self.needs_calibration and not self.calibration:
            raise BadOptionsError(
                f"{self.tflite_quantization.value} is calibrated on your own samples: give --calibration FILE "
                "(an .npz/.npy of inputs, or a .zip/.tar.gz of JPEG/PNG images)"
            )
        if self.calibration and not self.needs_calibration:
            raise BadOptionsError("--calibration is used by --quant int8 or int8-io for TFLite only")
        if self.input_range is not None and self.input_range not in INPUT_RANGES:
            raise BadOptionsError(f"--input-range is one of {', '.join(INPUT_RANGES)} (got '{self.input_range}')")

    def _check_quant_search(self) -> None:
        if not self.quant_search:
            return
        if self.quant_search not in QUANT_SEARCHES:
            raise BadOptionsError(
                f"quant= takes a quantization, {' or '.join(QUANT_SEARCHES)} (got '{self.quant_search}')"
            )
        quantized = (self.tflite_quantization, self.tfjs_quantization) != (Quantization.NONE, Quantization.NONE)
        if quantized or not self.verify:
            raise BadOptionsError(
                f"quant={self.quant_search} tries every quantization and verifies each; give no other"
            )

    def quantization_of(self, target: Target) -> Quantization:
        """What `target`'s file is quantized as (pb and savedmodel stay float32)."""
        if target is Target.TFLITE:
            return self.tflite_quantization
        return self.tfjs_quantization if target in TFJS_TARGETS else Quantization.NONE

    @property
    def shape_map(self) -> dict[str, tuple[int, ...]]:
        return dict(self.shapes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-like data (what a task sent to a conversion worker carries)."""
        return {
            "targets": [target.value for target in self.targets],
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "shapes": [[name, list(dims)] for name, dims in self.shapes],
            "tflite_quantization": self.tflite_quantization.value,
            "tfjs_quantization": self.tfjs_quantization.value,
            "verify": self.verify,
            "verify_inputs": self.verify_inputs,
            "warnings": list(self.warnings),
            "calibration": self.calibration,
            "input_range": self.input_range,
            "max_calibration_mb": self.max_calibration_mb,
            "quant_search": self.quant_search,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionOptions:
        return cls(
            targets=tuple(Target(target) for target in data["targets"]),
            inputs=tuple(data["inputs"]),
            outputs=tuple(data["outputs"]),
            shapes=tuple((name, tuple(dims)) for name, dims in data["shapes"]),
            tflite_quantization=Quantization(data["tflite_quantization"]),
            tfjs_quantization=Quantization(data["tfjs_quantization"]),
            verify=data["verify"],
            verify_inputs=data["verify_inputs"],
            warnings=tuple(data["warnings"]),
            # Absent from the options of jobs queued before int8 existed.
            calibration=data.get("calibration"),
            input_range=data.get("input_range"),
            max_calibration_mb=data.get("max_calibration_mb", DEFAULT_MAX_CALIBRATION_MB),
            quant_search=data.get("quant_search", ""),
        )


def _names(values: Iterable[Quantization]) -> str:
    return ", ".join(v.value for v in values)


def parse_targets(text: str) -> tuple[Target, ...]:
    """'tflite,tfjs' or 'all' -> targets."""
    if text.strip().lower() in ("all", ""):
        return (Target.TFLITE, Target.TFJS)
    targets = []
    for part in text.split(","):
        try:
            targets.append(Target(part.strip().lower()))
        except ValueError:
            raise BadOptionsError(
                f"unknown target '{part.strip()}'; use tflite, tfjs, tfjs-layers, pb, savedmodel or all"
            ) from None
    return tuple(dict.fromkeys(targets))


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """'name:1,224,224,3' -> ('name', (1, 224, 224, 3)); 'ratio:scalar' -> ('ratio', ()).

    The name may itself hold ':' (as in 'x:0').
    """
    name, sep, dims = text.strip().rpartition(":")
    if not sep or not name:
        raise BadOptionsError(f"a shape is written name:dims, like image:1,224,224,3 (got '{text}')")
    if dims.strip().lower() in SCALAR_WORDS:
        return name.strip(), ()
    try:
        values = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise BadOptionsError(f"the dimensions in '{text}' must be whole numbers, like 1,224,224,3") from None
    if not values or any(v <= 0 for v in values):
        raise BadOptionsError(
            f"the dimensions in '{text}' must be positive, like 1,224,224,3 (a scalar: {name.strip()}:scalar)"
        )
    return name.strip(), values


def split_quantization(text: str) -> tuple[Quantization, Quantization, list[str]]:
    """One user word -> (TFLite quantization, TF.js quantization, warnings).

    'float16' applies to both; 'dynamic' and 'uint8' are both 8-bit weights, so each target gets
    its own 8-bit kind; 'uint16' exists only in TF.js. 'int8' and 'int8-io' are asked of both, so that
    ConversionOptions refuses them for a TF.js target in one line. 'tflite:dynamic,tfjs:uint16' sets each.
    """
    text = text.strip().lower() or "none"
    if ":" in text:
        tflite, tfjs = Quantization.NONE, Quantization.NONE
        for part in text.split(","):
            target, _, value = part.partition(":")
            quant = _quantization(value)
            if target.strip() == "tflite":
                tflite = quant
            elif target.strip() == "tfjs":
                tfjs = quant
            else:
                raise BadOptionsError(f"unknown target '{target}' in '{text}'; use tflite:... or tfjs:...")
        return tflite, tfjs, []
    quant = _quantization(text)
    if quant in (Quantization.NONE, Quantization.FLOAT16) or quant.is_full_integer:
        return quant, quant, []
    if quant in (Quantization.DYNAMIC, Quantization.UINT8):
        return Quantization.DYNAMIC, Quantization.UINT8, []
    return (
        Quantization.NONE,
        Quantization.UINT16,
        ["TFLite has no 16-bit weight quantization; the .tflite stays float32"],
    )


# Made by convbot when their plain kind fails its check (converter/mixed_quant.py, int8_mixed.py), not asked for.
MADE_WHEN_FAILING = (Quantization.UINT8_MIXED, Quantization.INT8_MIXED, Quantization.INT8_IO_MIXED)


def _quantization(text: str) -> Quantization:
    try:
        quantization = Quantization(text.strip())
    except ValueError:
        quantization = None
    if quantization is None or quantization in MADE_WHEN_FAILING:
        made = (
            f"; {text.strip()} is made by itself when {text.strip().removesuffix('-mixed')} fails its check"
            if quantization is not None
            else ""
        )
        raise BadOptionsError(
            f"unknown quantization '{text}'; use none, float16, dynamic, uint8, uint16, int8 or int8-io{made}"
        )
    return quantization


def quantization_variants(
    options: ConversionOptions, calibration: str | None = None
) -> list[tuple[str, ConversionOptions]]:
    """The variants `--compare-quant` (and `--quant auto`) convert, named, for the targets `options` asks for;
    with the user's samples (`calibration`) a full-integer TFLite too (int8: float inputs and outputs)."""
    tfjs_targets = tuple(t for t in options.targets if t in (Target.TFJS, Target.TFJS_LAYERS))
    none, f16 = Quantization.NONE, Quantization.FLOAT16
    quantizable = tuple(t for t in options.targets if not t.is_tensorflow)  # pb and savedmodel stay float32
    variants = [("float32", replace(options, tflite_quantization=none, tfjs_quantization=none))]
    if quantizable:
        variants.append(
            ("float16", replace(options, targets=quantizable, tflite_quantization=f16, tfjs_quantization=f16))
        )
    if Target.TFLITE in options.targets:
        variants.append(
            ("dynamic", replace(options, targets=(Target.TFLITE,), tflite_quantization=Quantization.DYNAMIC))
        )
    if Target.TFLITE in options.targets and calibration:
        int8 = replace(
            options, targets=(Target.TFLITE,), tflite_quantization=Quantization.INT8, calibration=calibration
        )
        variants.append((Quantization.INT8.value, int8))
    if tfjs_targets:
        for quant in (Quantization.UINT8, Quantization.UINT16):
            variants.append((quant.value, replace(options, targets=tfjs_targets, tfjs_quantization=quant)))
    return variants
