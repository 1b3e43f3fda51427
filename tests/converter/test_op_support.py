"""Tests for converter.op_support: the op lists and the readiness verdicts built on them.

Most tests read the lists only. Two check the lists against the real toolchains
(TF 2.19's TFLiteConverter, tfjs-converter's op check); they import TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converter import op_support
from converter.op_support import OpFinding, check_readiness

ROOT = Path(__file__).resolve().parents[2]

MOBILENET_LIKE = {
    "Placeholder": 1,
    "Const": 140,
    "Conv2D": 15,
    "DepthwiseConv2dNative": 13,
    "FusedBatchNorm": 27,
    "Relu6": 27,
    "BiasAdd": 1,
    "AvgPool": 1,
    "Reshape": 1,
    "Softmax": 1,
    "Squeeze": 1,
    "Identity": 3,
}

# Not a TFLite builtin in TF 2.19 but on the Flex allowlist (checked for real below);
# TF.js 4.22 lacks it too.
SELECT_ONLY_OP = "ResizeBicubic"


def list_file_ops(name: str) -> list[str]:
    lines = (op_support.DATA_DIR / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("name", ["tflite_builtin_ops.txt", "tflite_select_ops.txt", "tfjs_ops.txt"])
def test_list_files_are_sorted_unique_and_headed(name: str) -> None:
    text = (op_support.DATA_DIR / name).read_text(encoding="utf-8")
    assert text.startswith("# ")
    ops = list_file_ops(name)
    assert ops == sorted(set(ops))
    assert all(op == op.strip() and " " not in op for op in ops)


def test_lists_hold_the_ops_every_model_uses() -> None:
    builtin, select = op_support.tflite_builtin_ops(), op_support.tflite_select_ops()
    for op in [
        "FusedBatchNorm",
        "FusedBatchNormV3",
        "BiasAdd",
        "Relu6",
        "DepthwiseConv2dNative",
        "Conv2D",
        "MatMul",
        "Softmax",
        "Sigmoid",
        "Mean",
        "ResizeBilinear",
        "Identity",
        "IdentityN",
        "NoOp",
        "Const",
        "Placeholder",
        "PlaceholderWithDefault",
        "StopGradient",
        "Snapshot",
        "CheckNumerics",
        "Assert",
    ]:
        assert op in builtin, op
    assert {"Conv2D", "TensorListReserve", "Erf", SELECT_ONLY_OP} <= select
    assert SELECT_ONLY_OP not in builtin
    assert "Case" not in select  # in the source allowlist, refused by TF 2.19 (see file header)
    assert len(builtin) > 150 and len(select) > 600


def test_mobilenet_like_graph_is_ready_for_both() -> None:
    found = check_readiness(MOBILENET_LIKE)
    assert found.tflite_builtin_ok
    assert found.tflite_needs_select_ops == ()
    assert found.tflite_unsupported == ()
    assert found.tfjs_ok
    assert found.tfjs_unsupported == ()
    assert found.tfjs_needs_execute_async == ()


def test_select_only_op_needs_the_flex_delegate() -> None:
    found = check_readiness({**MOBILENET_LIKE, SELECT_ONLY_OP: 2})
    assert not found.tflite_builtin_ok
    assert [f.op for f in found.tflite_needs_select_ops] == [SELECT_ONLY_OP]
    assert found.tflite_needs_select_ops[0].count == 2
    assert "Flex delegate" in found.tflite_needs_select_ops[0].note
    assert found.tflite_unsupported == ()
    assert [f.op for f in found.tfjs_unsupported] == [SELECT_ONLY_OP]


def test_unknown_op_is_unsupported_on_both() -> None:
    found = check_readiness({"Placeholder": 1, "Conv2D": 1, "MyCustomOp": 1})
    assert not found.tflite_builtin_ok and not found.tfjs_ok
    assert found.tflite_needs_select_ops == ()
    assert [f.op for f in found.tflite_unsupported] == ["MyCustomOp"]
    assert "conversion fails" in found.tflite_unsupported[0].note
    assert [f.op for f in found.tfjs_unsupported] == ["MyCustomOp"]


def test_plumbing_never_shows_and_findings_sort_by_count_then_name() -> None:
    counts = {
        "Placeholder": 3,
        "Const": 50,
        "StatefulPartitionedCall": 2,
        "ReadVariableOp": 9,
        "Zeta": 1,
        "Acos": 4,
        "Asin": 4,
        "Cosh": 7,
        "Unused": 0,
    }
    found = check_readiness(counts)
    assert [(f.op, f.count) for f in found.tflite_unsupported] == [
        ("Acos", 4),
        ("Asin", 4),
        ("Zeta", 1),
    ]
    assert [f.op for f in found.tflite_needs_select_ops] == ["Cosh"]
    assert [f.op for f in found.tfjs_unsupported] == ["Zeta"]


def test_known_pitfalls_get_specific_notes() -> None:
    found = check_readiness(
        {
            "TensorListReserve": 1,
            "While": 1,
            "Assert": 2,
            "Enter": 1,
            "Merge": 1,
            "NonMaxSuppressionV5": 1,
            "TFLite_Detection_PostProcess": 1,
            "SaveV2": 1,
            "ApplyAdam": 1,
            "Erf": 1,
        }
    )
    select = {f.op: f.note for f in found.tflite_needs_select_ops}
    assert "static batch size" in select["TensorListReserve"] and "53333" in select["TensorListReserve"]
    assert "training op" in select["ApplyAdam"] and "training op" in select["SaveV2"]
    assert "GELU" in select["Erf"]
    assert "While" not in select  # a TFLite builtin
    unsupported = {f.op: f.note for f in found.tflite_unsupported}
    assert "allow_custom_ops" in unsupported["TFLite_Detection_PostProcess"]
    tfjs = {f.op: f.note for f in found.tfjs_unsupported}
    assert "remove the Assert" in tfjs["Assert"] and "8304" in tfjs["Assert"]
    assert "allow_custom_ops" in tfjs["TFLite_Detection_PostProcess"]
    assert "training op" in tfjs["ApplyAdam"]
    asynchronous = {f.op: f.note for f in found.tfjs_needs_execute_async}
    assert set(asynchronous) == {"Enter", "Merge", "While", "TensorListReserve", "NonMaxSuppressionV5"}
    assert all("executeAsync" in note for note in asynchronous.values())
    assert found.tfjs_ok is False  # Assert, not the executeAsync-only ops


def test_to_dict_is_json_ready() -> None:
    found = check_readiness({"Conv2D": 1, "MyCustomOp": 2})
    data = found.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["tflite_unsupported"] == [{"op": "MyCustomOp", "count": 2, "note": found.tflite_unsupported[0].note}]
    assert data["tflite_builtin_ok"] is False and data["tfjs_ok"] is False
    assert OpFinding("A", 1, "n").to_dict() == {"op": "A", "count": 1, "note": "n"}


def test_tfjs_list_names_ops_as_tfjs_does() -> None:
    ops = op_support.tfjs_ops()
    assert {"Conv2D", "_FusedConv2D", "_FusedMatMul", "FusedBatchNormV3", "Relu6"} <= ops
    assert "FusedConv2D" not in ops  # the fused op's TF name has a leading underscore
    for missing in ["ResizeBicubic", "Assert", "MatrixInverse", "PrintV2"]:
        assert missing not in ops, missing


def test_bundled_tfjs_list_matches_the_installed_package() -> None:
    folder = op_support.installed_tfjs_op_list_dir()
    assert folder is not None, "tensorflowjs is in the lock file; run scripts/setup.sh"
    assert op_support.read_tfjs_op_list(folder) == frozenset(list_file_ops("tfjs_ops.txt")), (
        "tensorflowjs changed: regenerate converter/data/tfjs_ops.txt from its op_list/*.json"
    )


def test_check_readiness_imports_neither_tensorflow_nor_tensorflowjs() -> None:
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from converter.op_support import check_readiness, tfjs_ops\n"
        "r = check_readiness({'Conv2D': 3, 'ResizeBicubic': 1, 'MyCustomOp': 1})\n"
        "assert not r.tflite_builtin_ok and not r.tfjs_ok and len(tfjs_ops()) > 100\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflowjs', 'keras')]\n"
        "assert not bad, bad\n"
        "print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) < 2.0  # import plus first check; typically ~20 ms


def test_select_only_op_really_needs_select_tf_ops_in_tf_2_19() -> None:
    """The real converter agrees: builtins only fails, SELECT_TF_OPS turns it into a Flex op."""
    tf = pytest.importorskip("tensorflow")

    class Model(tf.Module):  # type: ignore[misc, name-defined]
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
        def resize(self, images):  # type: ignore[no-untyped-def]
            return tf.raw_ops.ResizeBicubic(images=images, size=tf.constant([16, 16]))

    model = Model()
    function = model.resize.get_concrete_function()
    assert {op.type for op in function.graph.get_operations()} >= {SELECT_ONLY_OP}

    def convert(*ops_sets: object) -> bytes:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
        converter.target_spec.supported_ops = list(ops_sets)
        return bytes(converter.convert())

    with pytest.raises(Exception, match=SELECT_ONLY_OP):
        convert(tf.lite.OpsSet.TFLITE_BUILTINS)
    flatbuffer = convert(tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS)
    assert b"Flex" + SELECT_ONLY_OP.encode() in flatbuffer


def test_tfjs_converter_rejects_what_the_list_lacks() -> None:
    """tfjs-converter's own op check agrees with tfjs_ops() on a real GraphDef."""
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflowjs")
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import validate

    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="images")
        tf.raw_ops.ResizeBicubic(images=images, size=tf.constant([16, 16]))
        tf.raw_ops.Relu6(features=images)
    graph_def = graph.as_graph_def()
    unsupported = validate(graph_def, False, False)
    assert unsupported == {SELECT_ONLY_OP}
    found = check_readiness({node.op: 1 for node in graph_def.node})
    assert {f.op for f in found.tfjs_unsupported} == unsupported
