"""The target buttons offer what can be made from the uploaded model, and tick and untick."""

from __future__ import annotations

from bot.dialogue import targets_for, toggle_target
from converter.options import parse_targets


def test_every_model_can_go_to_every_tensorflow_target_and_keras_2_to_a_layers_model() -> None:
    for model_format in ("frozen-graph", "tfjs-graph", "tf1-checkpoint", "saved-model", "keras-v3"):
        choices = targets_for({"format": model_format, "details": {"keras_version": "3.15.1"}})
        assert {"tflite", "tfjs", "pb", "savedmodel"} <= set(choices) and "tfjs-layers" not in choices
    assert "tfjs-layers" in targets_for({"format": "keras-h5", "details": {"keras_version": "2.0.5"}})
    for choice in targets_for({"format": "keras-h5", "details": {"keras_version": "2.0.5"}}):
        assert parse_targets(choice)  # every button is a target the converter knows


def test_targets_are_ticked_and_unticked_and_one_always_stays() -> None:
    assert toggle_target("all", "pb") == "tflite,tfjs,pb"
    assert toggle_target("tflite,tfjs,pb", "tfjs") == "tflite,pb"
    assert toggle_target("tflite,pb", "pb") == "tflite"
    assert toggle_target("tflite", "tflite") == "tflite"  # nothing to convert to is not a choice
    assert toggle_target("tflite", "tfjs") == "all"
    assert toggle_target("savedmodel", "all") == "all"
