"""What a conversion produced: plain data, serialisable to JSON."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from converter.formats import ModelFormat, Quantization, Target
from converter.summary import TensorSpec

PASSED, FAILED, NOT_RUN, ERROR = "passed", "failed", "not run", "error"  # verification statuses


@dataclass(frozen=True)
class Artifact:
    """One converted model: a `.tflite` file, or a TF.js folder (model.json and its shards)."""

    target: Target
    path: str
    size: int  # bytes; for a folder, all its files
    sha256: str  # of the file; for a folder, of its files' names and hashes
    quantization: Quantization
    files: tuple[str, ...] = ()  # for a folder: its files, relative to it

    @classmethod
    def from_path(cls, target: Target, path: Path, quantization: Quantization) -> Artifact:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            digest = hashlib.sha256()
            for file in files:
                digest.update(f"{file.relative_to(path)}\0{sha256_file(file)}\n".encode())
            return cls(
                target,
                str(path),
                sum(f.stat().st_size for f in files),
                digest.hexdigest(),
                quantization,
                tuple(str(f.relative_to(path)) for f in files),
            )
        return cls(target, str(path), path.stat().st_size, sha256_file(path), quantization)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class OutputCheck:
    """How far one output of an artifact is from the source model's."""

    name: str
    max_abs_error: float
    max_rel_error: float  # max_abs_error / the output's scale
    passed: bool
    note: str = ""  # e.g. how many selected rows chose differently among tied scores


@dataclass(frozen=True)
class TensorEntry:
    """How to feed or fetch one tensor of an artifact: the name the user chose and the artifact's own."""

    key: str  # the chosen node name or signature key
    name: str  # the tensor's name in the artifact
    dtype: str
    shape: tuple[int, ...]
    index: int | None = None  # TFLite tensor index
    scale: float = 0.0  # an int8 tensor (int8-io): real value = scale * (stored - zero_point); 0 for others
    zero_point: int = 0


@dataclass(frozen=True)
class TopOneAgreement:
    """How often a quantized classifier picks the float model's class, on the user's images in class folders."""

    images: int
    agreeing: int
    by_class: tuple[tuple[str, int, int], ...] = ()  # (class folder, images, agreeing)

    @property
    def percent(self) -> float:
        return 100.0 * self.agreeing / self.images if self.images else 0.0


@dataclass(frozen=True)
class ArtifactCheck:
    """The verdict on one artifact."""

    target: Target
    quantization: Quantization
    status: str  # passed | failed | not run | error
    message: str
    tolerance: float
    outputs: tuple[OutputCheck, ...] = ()
    inputs_manifest: tuple[TensorEntry, ...] = ()
    outputs_manifest: tuple[TensorEntry, ...] = ()
    culprit: str = ""  # a failed artifact: the first node where it departs, the weights rounded most
    advice: str = ""  # a failed artifact: what the failure means and the next step
    engine: str = ""  # what ran the artifact where that varies: the TF.js backend ("wasm", "cpu")
    agreement: TopOneAgreement | None = None  # an int8 classifier calibrated on images in class folders
    float_weights: tuple[str, ...] = ()  # uint8-mixed: the weights kept in float16, the worst rounded first
    float_layers: tuple[str, ...] = ()  # int8-mixed, int8-io-mixed: the layers kept in float, the worst first


@dataclass(frozen=True)
class ConversionResult:
    """The artifacts of one conversion and how they were made."""

    source: str
    format: ModelFormat
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    artifacts: tuple[Artifact, ...]
    timings: dict[str, float]
    versions: dict[str, str]
    warnings: tuple[str, ...] = ()
    needs_flex_delegate: bool = False
    validation: tuple[ArtifactCheck, ...] = ()
    # For a TF.js model: the graph convbot rebuilt, run in TensorFlow, against the model run in TF.js
    # (is the conversion faithful?), apart from each artifact's runtime.
    graph_check: tuple[OutputCheck, ...] = ()
    log: str = field(default="", repr=False)
    # A job's quant=auto|compare: what was kept per target and why, and the chart (converter/quant_search.py).
    quant_search: dict[str, Any] = field(default_factory=dict)

    def artifact(self, target: Target) -> Artifact | None:
        return next((a for a in self.artifacts if a.target is target), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = self.format.value
        for item in data["artifacts"]:
            item["target"] = item["target"].value
            item["quantization"] = item["quantization"].value
        data["validation"] = [check_to_dict(check) for check in self.validation]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionResult:
        """The result `to_dict` gave (as a conversion worker on another machine sends it back)."""
        return cls(
            source=data["source"],
            format=ModelFormat(data["format"]),
            inputs=tuple(_tensor_spec(item) for item in data["inputs"]),
            outputs=tuple(_tensor_spec(item) for item in data["outputs"]),
            artifacts=tuple(artifact_from_dict(item) for item in data["artifacts"]),
            timings=dict(data["timings"]),
            versions=dict(data["versions"]),
            warnings=tuple(data["warnings"]),
            needs_flex_delegate=data["needs_flex_delegate"],
            validation=tuple(check_from_dict(item) for item in data["validation"]),
            graph_check=tuple(OutputCheck(**item) for item in data["graph_check"]),
            log=data["log"],
            quant_search=data.get("quant_search", {}),
        )


def artifact_to_dict(artifact: Artifact) -> dict[str, Any]:
    data = asdict(artifact)
    data["target"] = artifact.target.value
    data["quantization"] = artifact.quantization.value
    return data


def artifact_from_dict(data: dict[str, Any]) -> Artifact:
    return Artifact(
        Target(data["target"]),
        data["path"],
        data["size"],
        data["sha256"],
        Quantization(data["quantization"]),
        tuple(data["files"]),
    )


def check_to_dict(check: ArtifactCheck) -> dict[str, Any]:
    """A verdict as JSON-like data, as job records and the bot hold it."""
    data = asdict(check)
    data["target"] = check.target.value
    data["quantization"] = check.quantization.value
    return data


def check_from_dict(data: dict[str, Any]) -> ArtifactCheck:
    """The verdict `check_to_dict` gave."""

    def manifest(items: list[dict[str, Any]]) -> tuple[TensorEntry, ...]:
        return tuple(TensorEntry(**{**item, "shape": tuple(item["shape"])}) for item in items)

    return ArtifactCheck(
        **{
            **data,
            "target": Target(data["target"]),
            "quantization": Quantization(data["quantization"]),
            "outputs": tuple(OutputCheck(**item) for item in data["outputs"]),
            "inputs_manifest": manifest(data["inputs_manifest"]),
            "outputs_manifest": manifest(data["outputs_manifest"]),
            "agreement": _agreement(data.get("agreement")),
            "float_weights": tuple(data.get("float_weights", ())),
            "float_layers": tuple(data.get("float_layers", ())),
        }
    )


def _agreement(data: dict[str, Any] | None) -> TopOneAgreement | None:
    if data is None:
        return None
    return TopOneAgreement(data["images"], data["agreeing"], tuple(tuple(row) for row in data["by_class"]))


def _tensor_spec(data: dict[str, Any]) -> TensorSpec:
    shape = data.get("shape")
    return TensorSpec(**{**data, "shape": None if shape is None else tuple(shape)})
