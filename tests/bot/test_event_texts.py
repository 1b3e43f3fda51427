"""Every stage the converter reports and every reason a job fails has a sentence in each language, so no
user reads a raw id (write_pb) or an English limit message in a Chinese chat."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot.progress import failure_reason
from bot.texts import EN, ZH, Texts
from converter import conversion
from jobs.events import EventKind, FailureReason, JobEvent, Stage

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def stage_ids_in_converter_source() -> set[str]:
    """The string literals conversion.py passes to `<clock>.stage(...)`: what STAGES must list."""
    tree = ast.parse(Path(conversion.__file__).read_text(encoding="utf-8"))
    return {
        call.args[0].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "stage"
        and call.args
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    }


def test_the_jobs_layer_knows_every_stage_the_converter_reports() -> None:
    assert set(conversion.STAGES) == stage_ids_in_converter_source()
    assert {stage.value for stage in Stage} == set(conversion.STAGES)


@pytest.mark.parametrize("texts", [EN, ZH], ids=["en", "zh"])
def test_every_stage_has_a_sentence(texts: Texts) -> None:
    for stage_id in conversion.STAGES:
        assert texts.stages.get(Stage(stage_id), "").strip(), f"no text for stage {stage_id}"
    if texts is ZH:
        assert all(CHINESE.search(text) for text in texts.stages.values())


def failed(reason: FailureReason, **args: str | int | float) -> JobEvent:
    return JobEvent(1, 1, EventKind.FAILED, message="English message", reason=reason, reason_args=args)


# The figures the worker pool gives each reason (jobs/backend.py LocalWorkerPool._death).
FIGURES: dict[FailureReason, dict[str, str | int | float]] = {
    FailureReason.TIMEOUT: {"seconds": 45.0},
    FailureReason.MEMORY: {"mb": 3000},
    FailureReason.CRASH: {"cause": "SIGABRT"},
}


@pytest.mark.parametrize("texts", [EN, ZH], ids=["en", "zh"])
def test_every_failure_reason_has_a_sentence_naming_its_figures(texts: Texts) -> None:
    for reason in FailureReason:
        figures = FIGURES.get(reason, {})
        text = failure_reason(texts, failed(reason, **figures))
        assert text.strip(), f"no text for {reason}"
        for figure in figures.values():
            shown = f"{figure:g}" if isinstance(figure, float) else str(figure)
            assert shown in text, f"{reason}: {text!r} does not name {shown}"
        if texts is ZH and reason is not FailureReason.CONVERSION_ERROR:
            assert CHINESE.search(text) and "stopped" not in text, text


def test_the_converters_own_message_is_shown_as_it_is() -> None:
    for texts in (EN, ZH):
        assert failure_reason(texts, failed(FailureReason.CONVERSION_ERROR)) == "English message"


def test_chinese_users_read_the_limits_in_chinese() -> None:
    assert failure_reason(ZH, failed(FailureReason.TIMEOUT, seconds=45.0)) == "转换耗时超过 45 秒，已被停止"
    assert failure_reason(ZH, failed(FailureReason.MEMORY, mb=3000)) == "转换占用内存超过 3000 MB，已被停止"
