"""A worker's job with quant=auto: every variant converted and verified, only the smallest passing file of each
target stored (the losers never reach the storage nor the user), and the size-against-error chart stored beside
them; what it returns survives the trip a remote worker's result makes (JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converter.options import ConversionOptions
from converter.result import ConversionResult
from jobs.job_conversion import JobArguments, run_job
from jobs.storage import FolderStorage
from tests.test_quant_auto import write_one_wide_weight_graph


def test_an_auto_job_stores_the_smallest_passing_file_of_each_target_and_the_chart(tmp_path: Path) -> None:
    import matplotlib.image

    storage = FolderStorage(tmp_path / "data")
    model_key = storage.put_upload(write_one_wide_weight_graph(tmp_path / "wide.pb"), "wide.pb")
    arguments = JobArguments(7, model_key, "wide.pb", ConversionOptions(quant_search="auto"))
    sent_early: list[str] = []
    result = run_job(
        arguments, storage, tmp_path / "scratch", on_artifact=lambda artifact, check: sent_early.append(artifact.path)
    )

    choices = {choice["target"]: choice for choice in result.quant_search["choices"]}
    assert set(choices) == {"tflite", "tfjs"}
    for choice in choices.values():
        tried, kept = choice["tried"], choice["kept"]
        assert kept["status"] == "passed"
        assert kept["size"] == min(variant["size"] for variant in tried if variant["status"] == "passed")
        assert any(variant["status"] == "failed" and variant["size"] < kept["size"] for variant in tried), choice
    kept_names = {Path(choice["kept"]["path"]).name for choice in choices.values()}
    stored = {path.name for path in storage.path("artifacts/7").iterdir()}
    assert stored == kept_names | {"wide_quantization.png"}, stored
    assert {Path(artifact.path).name for artifact in result.artifacts} == kept_names
    assert sent_early == []  # auto sends nothing before it has chosen
    assert {(c.target.value, c.quantization.value) for c in result.validation} == {
        (target, choice["kept"]["quantization"]) for target, choice in choices.items()
    }

    chart = result.quant_search["chart"]
    assert chart["path"] == "artifacts/7/wide_quantization.png"
    image = matplotlib.image.imread(storage.path(chart["path"]))
    assert image.shape[:2] == (500, 1000) and len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 8

    assert JobArguments.from_dict(json.loads(json.dumps(arguments.to_dict()))) == arguments
    back = ConversionResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.quant_search == result.quant_search and back.artifacts == result.artifacts
