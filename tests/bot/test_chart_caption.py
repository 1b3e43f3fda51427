"""The chart's caption fits Telegram's 1024 characters however many variants lost, and still names every
target's winner: each reason is cut after whole clauses."""

from __future__ import annotations

from bot.texts import EN, ZH
from bot.views import CAPTION_LIMIT, chart_caption


def _reason(target: str, winner: str, losers: int) -> str:
    lost = "".join(
        f"; uint8-mixed-{n} (95.2 KB) is off by 3.6e-02 of scale, over its 0.01 tolerance" for n in range(losers)
    )
    return f"{target}: {winner} (150.2 KB): the smallest that passes{lost}"


def test_a_long_caption_is_cut_after_whole_clauses_keeping_every_winner() -> None:
    targets = {"tflite": "dynamic", "tfjs": "uint16", "tfjs-layers": "float16"}
    quant_search = {"choices": [{"reason": _reason(target, winner, 12)} for target, winner in targets.items()]}
    for texts in (EN, ZH):
        caption = chart_caption(texts, quant_search)
        lines = caption.splitlines()[1:]
        assert len(caption) <= CAPTION_LIMIT
        assert [line.split(" (")[0] for line in lines] == [f"{t}: {w}" for t, w in targets.items()]
        assert all(line.endswith("tolerance; …") for line in lines), lines


def test_a_short_caption_is_whole() -> None:
    quant_search = {"choices": [{"reason": _reason("tflite", "float16", 1)}]}
    assert chart_caption(EN, quant_search).splitlines()[1] == _reason("tflite", "float16", 1)
