"""The target buttons offer only what can be made from the uploaded model, and tick and untick."""

from __future__ import annotations

from bot.dialogue import targets_for, toggle_target
from converter.options import parse_targets


def test_frozen_graph_target_only_for_graph_like_models() -> None:
    for model_format in ("frozen-graph", "tfjs-graph"):
        assert "pb" in targets_for({"format": model_format})
    for model_format in ("saved-model", "keras-h5", "keras-v3"):
        choices = targets_for({"format": model_format})
        assert "pb" not in choices and "savedmodel" in choices
    for choice in targets_for({"format": "frozen-graph"}):
        assert parse_targets(choice)  # every button is a target the converter knows


def test_targets_are_ticked_and_unticked_and_one_always_stays() -> None:
    assert toggle_target("all", "pb") == "tflite,tfjs,pb"
    assert toggle_target("tflite,tfjs,pb", "tfjs") == "tflite,pb"
    assert toggle_target("tflite,pb", "pb") == "tflite"
    assert toggle_target("tflite", "tflite") == "tflite"  # nothing to convert to is not a choice
    assert toggle_target("tflite", "tfjs") == "all"
    assert toggle_target("savedmodel", "all") == "all"
