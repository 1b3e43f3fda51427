"""`converter.convert` runs TensorFlow in a child process: a crash, an abort or a hang there
fails that conversion only, with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from converter import ConversionOptions, ConversionTimeout, ConverterCrash, Target, convert


def test_conversion_in_a_child_process(multihead_graph, tmp_path: Path) -> None:
    result = convert(multihead_graph.path, tmp_path / "out", ConversionOptions(targets=(Target.TFLITE,)))
    artifact = result.artifact(Target.TFLITE)
    assert artifact is not None and Path(artifact.path).stat().st_size == artifact.size
    assert Path(artifact.path).read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize(("hook", "expected"), [("abort", "crashed (SIGABRT)"), ("kill", "was killed")])
def test_a_dying_converter_fails_only_its_conversion(
    hook: str, expected: str, multihead_graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVBOT_TEST_HOOK", hook)
    with pytest.raises(ConverterCrash) as caught:
        convert(multihead_graph.path, tmp_path / "out", timeout=60)
    assert expected in caught.value.message
    monkeypatch.delenv("CONVBOT_TEST_HOOK")
    # The caller is unharmed and the next conversion works.
    assert convert(multihead_graph.path, tmp_path / "again", ConversionOptions(targets=(Target.TFLITE,))).artifacts


def test_a_hanging_converter_is_stopped_at_the_timeout(
    multihead_graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVBOT_TEST_HOOK", "hang")
    with pytest.raises(ConversionTimeout) as caught:
        convert(multihead_graph.path, tmp_path / "out", timeout=3)
    assert caught.value.message == "the conversion took longer than 3 s and was stopped"
