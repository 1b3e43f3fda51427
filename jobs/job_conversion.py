"""One job's conversion where a worker runs it, on this machine or another: the model read from the
storage, the artifacts written to it, each one as soon as it is ready, under the job's id.

The job service sends only `JobArguments` (ids, a storage key, options: JSON-like data), so a worker
needs nothing of the bot's machine: not its disk, not its database.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converter.child_process import run_test_hook
from converter.conversion import artifact_stem, convert_in_process
from converter.options import ConversionOptions
from converter.quant_search import convert_searching_quantization
from converter.result import Artifact, ArtifactCheck, ConversionResult
from jobs.storage import ARTIFACTS, FolderStorage, Storage


@dataclass(frozen=True)
class JobArguments:
    job_id: int
    model_key: str  # the upload, in the storage (the same bytes sent under two names are stored once)
    model_name: str  # the name the user sent it under: `pose.pb` -> pose.tflite, pose_tfjs/
    options: ConversionOptions  # `calibration`, when set, is a storage key: run_job fetches the samples

    @property
    def calibration_key(self) -> str | None:
        """The int8 samples in the storage (a worker on another machine reads them from there)."""
        return self.options.calibration

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model_key": self.model_key,
            "model_name": self.model_name,
            "options": self.options.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobArguments:
        options = ConversionOptions.from_dict(data["options"])
        return cls(int(data["job_id"]), str(data["model_key"]), str(data["model_name"]), options)


def run_job(
    arguments: JobArguments,
    storage: Storage,
    scratch: Path,
    progress: Callable[[str], None] | None = None,
    on_artifact: Callable[[Artifact, ArtifactCheck | None], None] | None = None,
) -> ConversionResult:
    """Convert the job's model; the result's (and `on_artifact`'s) artifact paths are storage keys.

    `scratch` is this worker's own folder for the job (the model fetched, archives unpacked, artifacts
    written before they are stored); it is removed at the end."""
    work_dir = scratch / f"job-{arguments.job_id}"
    try:
        model = storage.local_path(arguments.model_key, work_dir / "model")
        options = arguments.options
        if arguments.calibration_key is not None:
            samples = storage.local_path(arguments.calibration_key, work_dir / "calibration")
            options = replace(options, calibration=str(samples))
        run_test_hook(Path(arguments.model_name))
        if isinstance(storage, FolderStorage):  # written in place: storing them changes nothing
            out_dir = storage.path(f"{ARTIFACTS}/{arguments.job_id}")
        else:
            out_dir = work_dir / "out"
        stored: dict[str, Artifact] = {}  # local path -> the artifact with its key

        def store(artifact: Artifact) -> Artifact:
            if artifact.path not in stored:
                key = storage.put_artifact(arguments.job_id, Path(artifact.path))
                stored[artifact.path] = replace(artifact, path=key)
            return stored[artifact.path]

        def ready(artifact: Artifact, check: ArtifactCheck | None) -> None:
            if on_artifact is not None:
                on_artifact(store(artifact), check)  # in the storage before the bot hears of it

        stem = artifact_stem(Path(arguments.model_name))
        if options.quant_search:  # only the files kept come back: the losers of auto are deleted
            result = convert_searching_quantization(
                model, out_dir, options, work_dir / "convert", stem, progress=progress, on_artifact=ready
            )
            result = _with_chart_stored(result, lambda path: storage.put_artifact(arguments.job_id, path))
        else:
            result = convert_in_process(
                model, out_dir, options, work_dir / "convert", stem=stem, progress=progress, on_artifact=ready
            )
        return replace(result, artifacts=tuple(store(artifact) for artifact in result.artifacts))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _with_chart_stored(result: ConversionResult, put: Callable[[Path], str]) -> ConversionResult:
    """The quantization chart in the storage like the artifacts (a worker's disk is not the bot's), by its key."""
    chart = result.quant_search["chart"]
    return replace(result, quant_search={**result.quant_search, "chart": {**chart, "path": put(Path(chart["path"]))}})
