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

    def __post_init__(self) -> None:
        if not self.targets:
            raise BadOptionsError("choose at least one target: tflite, tfjs")
        if self.tflite_quantization not in TFLITE_QUANTIZATIONS:
            raise BadOptionsError(f"TFLite takes quantization {_names(TFLITE_QUANTIZATIONS)}")
        if self.tfjs_quantization not in TFJS_QUANTIZATIONS:
            raise BadOptionsError(f"TF.js takes quantization {_names(TFJS_QUANTIZATIONS)}")

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
    its own 8-bit kind; 'uint16' exists only in TF.js. 'tflite:dynamic,tfjs:uint16' sets each.
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
    if quant in (Quantization.NONE, Quantization.FLOAT16):
        return quant, quant, []
    if quant in (Quantization.DYNAMIC, Quantization.UINT8):
        return Quantization.DYNAMIC, Quantization.UINT8, []
    return (
        Quantization.NONE,
        Quantization.UINT16,
        ["TFLite has no 16-bit weight quantization; the .tflite stays float32"],
    )


def _quantization(text: str) -> Quantization:
    try:
        return Quantization(text.strip())
    except ValueError:
        raise BadOptionsError(f"unknown quantization '{text}'; use none, float16, dynamic, uint8 or uint16") from None


def quantization_variants(options: ConversionOptions) -> list[tuple[str, ConversionOptions]]:
    """The variants `--compare-quant` converts, named, for the targets `options` asks for."""
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
    if tfjs_targets:
        for quant in (Quantization.UINT8, Quantization.UINT16):
            variants.append((quant.value, replace(options, targets=tfjs_targets, tfjs_quantization=quant)))
    return variants
