"""What a conversion produced: plain data, serialisable to JSON."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from converter.formats import ModelFormat, Quantization, Target
from converter.summary import TensorSpec


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
    log: str = field(default="", repr=False)

    def artifact(self, target: Target) -> Artifact | None:
        return next((a for a in self.artifacts if a.target is target), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = self.format.value
        for artifact in data["artifacts"]:
            artifact["target"] = artifact["target"].value
            artifact["quantization"] = artifact["quantization"].value
        return data
