"""Full-integer (int8, int8-io) TFLite calibrated on the user's own samples: the artifacts run in the TFLite
interpreter close to the float model on those samples, the top-1 agreement on a labelled image set, and every
refusal in one line."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.quant_models import CLASSES, class_image, write_labelled_zip, write_small_mobilenet
from cli.main import _attach_input_range
from cli.render import render_result
from converter import BadOptionsError, ConversionOptions, Quantization, Target
from converter.calibration import MAX_ARCHIVE_MEMBERS, MAX_SAMPLES, InputSlot, load_calibration
from converter.conversion import convert_in_process
from converter.errors import ConversionError, UnsafeArchiveError
from converter.options import split_quantization
from converter.result import PASSED, ConversionResult, TopOneAgreement

IMAGES_PER_CLASS = 4
FER_SLOT = InputSlot("input_1", "float32", (1, 64, 64, 1))
INT8_TOLERANCE = 1e-1  # converter/verify.py TOLERANCES for int8 and int8-io
BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def _convert(model: Path, tmp_path: Path, quant: str, calibration: Path, **options: Any) -> ConversionResult:
    tflite, tfjs, _ = split_quantization(quant)
    chosen = ConversionOptions(
        targets=(Target.TFLITE,),
        tflite_quantization=tflite,
        tfjs_quantization=tfjs,
        calibration=str(calibration),
        **options,
    )
    return convert_in_process(model, tmp_path / "out", chosen, tmp_path / "work")


def _images_as_inputs(zip_path: Path, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The zip's images as the model sees them with --input-range 0,1, decoded here independently."""
    from PIL import Image

    mode = "L" if shape[3] == 1 else "RGB"
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(archive.namelist())
        images = [Image.open(io.BytesIO(archive.read(name))).convert(mode) for name in names]
    resized = [np.asarray(i.resize((shape[2], shape[1]), Image.Resampling.BILINEAR), np.float32) for i in images]
    return [(pixels / 255.0).reshape(shape).astype(np.float32) for pixels in resized]


def _run_int8(tflite_path: Path, key: str, image: np.ndarray) -> np.ndarray:
    """The .tflite run as an app runs it: int8-io inputs quantized and outputs dequantized by hand."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    runner = interpreter.get_signature_runner("serving_default")
    ((input_key, detail),) = runner.get_input_details().items()
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        image = np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8)
    ((_, out_detail),) = runner.get_output_details().items()
    (value,) = runner(**{input_key: image}).values()
    if out_detail["dtype"] == np.int8:
        scale, zero_point = out_detail["quantization"]
        value = (value.astype(np.float32) - zero_point) * scale
    return np.asarray(value)


def _float_kernel_ops(tflite_path: Path) -> list[str]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    tensors = interpreter.get_tensor_details()
    return [
        op["op_name"]
        for op in interpreter._get_ops_details()
        if op["op_name"] not in BOUNDARY_OPS
        and any(tensors[i]["dtype"] == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0)
    ]


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def _check_int8_artifact(
    result: ConversionResult, quant: str, images: list[np.ndarray], reference: Any, key: str
) -> tuple[float, Any]:
    """Asserts what a user would check; returns the measured error on their images and the check."""
    (artifact,) = result.artifacts
    (check,) = result.validation
    assert artifact.quantization is Quantization(quant)
    tflite = Path(artifact.path)
    assert _float_kernel_ops(tflite) == []  # integer throughout: what an NPU or a microcontroller needs
    # Relative to the output's scale over all the images, as convbot's check measures (converter/verify.py).
    expected = [reference(image) for image in images]
    scale = max(float(np.max(np.abs(e))) for e in expected)
    errors = [
        float(np.max(np.abs(_run_int8(tflite, key, image) - wanted))) / scale
        for image, wanted in zip(images, expected, strict=True)
    ]
    assert max(errors) <= INT8_TOLERANCE
    (entry,) = check.inputs_manifest
    if quant == "int8-io":
        assert entry.dtype == "int8" and entry.scale > 0 and -128 <= entry.zero_point <= 127
        assert check.outputs_manifest[0].dtype == "int8" and check.outputs_manifest[0].scale > 0
    else:
        assert entry.dtype == "float32" and entry.scale == 0
    # Judged on the user's samples, which set its ranges; the other inputs' figure is for information.
    assert check.status == PASSED and "checked on 3 of your samples; on random" in check.message
    agreement = check.agreement
    assert agreement is not None and agreement.images == len(CLASSES) * IMAGES_PER_CLASS
    assert [row[:2] for row in agreement.by_class] == [(label, IMAGES_PER_CLASS) for label in CLASSES]
    print(
        f"{quant}: {artifact.size} bytes, worst error on the images {max(errors):.3e}, "
        f"check {check.status} ({', '.join(f'{o.name} {o.max_rel_error:.3e}' for o in check.outputs)}), "
        f"{check.message}; agreement {agreement.agreeing}/{agreement.images}"
    )
    return max(errors), check


# ---------------------------------------------------------------- the FER Keras model (tests/data)


@pytest.fixture(scope="module")
def labelled_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_labelled_zip(tmp_path_factory.mktemp("calibration") / "photos.zip", IMAGES_PER_CLASS)


@pytest.fixture(scope="module")
def fer_reference(fer_model: Path) -> Any:
    from converter.serving_export import load_keras_model_safely

    model = load_keras_model_safely(fer_model)
    return lambda image: np.asarray(model(image, training=False))


@pytest.mark.parametrize("quant", ["int8", "int8-io"])
def test_fer_keras_model_int8_runs_close_to_the_float_model_on_your_images(
    quant: str, fer_model: Path, fer_reference: Any, labelled_images: Path, tmp_path: Path
) -> None:
    result = _convert(fer_model, tmp_path, quant, labelled_images, input_range="0,1")
    images = _images_as_inputs(labelled_images, (1, 64, 64, 1))
    _check_int8_artifact(result, quant, images, fer_reference, "predictions")
    shown = render_result(result)
    assert f"top-1 agrees on {result.validation[0].agreement.percent:.0f} % of your 12 images" in shown  # type: ignore[union-attr]
    if quant == "int8-io":
        assert "int8 [?,64,64,1] scale " in shown and " zero point " in shown


# ---------------------------------------------------------------- a MobileNet-class frozen graph


@pytest.fixture(scope="module")
def mobilenet_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_mobilenet(tmp_path_factory.mktemp("mobilenet") / "mobilenet.pb", per_class=IMAGES_PER_CLASS)


@pytest.mark.parametrize("quant", ["int8", "int8-io"])
def test_mobilenet_class_frozen_graph_int8_runs_close_to_the_float_model_on_your_images(
    quant: str, mobilenet_graph: Path, labelled_images: Path, tmp_path: Path
) -> None:
    from converter.formats import ModelFormat
    from converter.verify import reference_runner

    result = _convert(mobilenet_graph, tmp_path, quant, labelled_images, input_range="0,1")
    (output,) = result.outputs
    run = reference_runner(ModelFormat.FROZEN_GRAPH, mobilenet_graph, [output.name])
    images = _images_as_inputs(labelled_images, (1, 32, 32, 3))
    _check_int8_artifact(result, quant, images, lambda image: run({"image": image})[output.name], output.name)


def test_npz_samples_calibrate_a_model_without_images(fer_model: Path, fer_reference: Any, tmp_path: Path) -> None:
    samples = np.random.default_rng(3).random((8, 64, 64, 1), dtype=np.float32)
    np.savez(tmp_path / "samples.npz", input_1=samples)
    result = _convert(fer_model, tmp_path, "int8", tmp_path / "samples.npz")
    (check,) = result.validation
    assert check.agreement is None  # arrays have no classes
    error = _relative_error(
        _run_int8(Path(result.artifacts[0].path), "predictions", samples[:1]), fer_reference(samples[:1])
    )
    assert error <= INT8_TOLERANCE
    assert check.status == PASSED  # calibrated on the same kind of values the check feeds it


def test_a_tie_at_the_top_of_the_quantized_scores_picks_no_class() -> None:
    """A random-weight 1000-class MobileNet scores every class 0.001, which int8 rounds to 0 everywhere: argmax
    would say both pick class 0."""
    from converter.agreement import top1_agreement
    from converter.calibration import CalibrationSet

    images = CalibrationSet(({"x": np.zeros(1)},) * 2, ("a", "b"))
    uniform = lambda _: {"y": np.full((1, 1000), 0.001, np.float32)}  # noqa: E731
    zeros = lambda _: {"y": np.zeros((1, 1000), np.float32)}  # noqa: E731
    peaked = lambda _: {"y": np.eye(1, 1000, 7, dtype=np.float32)}  # noqa: E731
    assert top1_agreement(uniform, zeros, images, "y") == TopOneAgreement(2, 0, (("a", 1, 0), ("b", 1, 0)))
    assert top1_agreement(peaked, peaked, images, "y") == TopOneAgreement(2, 2, (("a", 1, 1), ("b", 1, 1)))
    assert top1_agreement(peaked, uniform, images, "y").agreeing == 0  # type: ignore[union-attr]


# ---------------------------------------------------------------- refusals, one line each


def test_int8_without_samples_is_refused() -> None:
    with pytest.raises(BadOptionsError, match=r"int8 is calibrated on your own samples: give --calibration FILE"):
        ConversionOptions(targets=(Target.TFLITE,), tflite_quantization=Quantization.INT8)


def test_int8_for_tfjs_is_refused(tmp_path: Path) -> None:
    tflite, tfjs, _ = split_quantization("int8")
    with pytest.raises(BadOptionsError, match=r"^int8 is for TFLite only \(TF.js has no integer kernels\): use --to"):
        ConversionOptions(tflite_quantization=tflite, tfjs_quantization=tfjs, calibration="x.npz")
    # Each target its own: int8 for TFLite beside uint8 for TF.js is fine.
    tflite, tfjs, _ = split_quantization("tflite:int8,tfjs:uint8")
    options = ConversionOptions(tflite_quantization=tflite, tfjs_quantization=tfjs, calibration="x.npz")
    assert ConversionOptions.from_dict(options.to_dict()) == options


def test_images_without_an_input_range_ask_which_one(labelled_images: Path, tmp_path: Path) -> None:
    with pytest.raises(BadOptionsError) as refused:
        load_calibration(labelled_images, [FER_SLOT], None, tmp_path, 50)
    assert str(refused.value) == (
        "how do your model's inputs see pixels? give --input-range 0,1, -1,1 or 0,255 (for 0..255 pixels)"
    )


def test_the_input_range_maps_pixels(labelled_images: Path, tmp_path: Path) -> None:
    values = {}
    for text in ("0,1", "-1,1", "0,255"):
        calibration = load_calibration(labelled_images, [FER_SLOT], text, tmp_path / text, 50)
        values[text] = np.stack([sample["input_1"] for sample in calibration.samples])
        assert values[text].shape == (12, 1, 64, 64, 1) and values[text].dtype == np.float32
        assert calibration.classes == tuple(label for label in CLASSES for _ in range(IMAGES_PER_CLASS))
    expected = np.stack(_images_as_inputs(labelled_images, (1, 64, 64, 1)))  # pixels / 255, decoded here
    np.testing.assert_allclose(values["0,1"], expected, atol=1e-6)
    np.testing.assert_allclose(values["-1,1"], expected * 2 - 1, atol=1e-5)
    np.testing.assert_allclose(values["0,255"], expected * 255, atol=1e-3)
    assert _attach_input_range(["convert", "m.h5", "--input-range", "-1,1"])[-1] == "--input-range=-1,1"


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"input_1": np.zeros((0, 64, 64, 1), np.float32)}, "the calibration file holds no samples"),
        (
            {"input_1": np.zeros((5, 32, 32, 1), np.float32)},
            "the calibration samples do not fit input input_1: expected float32 [N,64,64,1], got float32 [5,32,32,1]",
        ),
        (
            {"input_1": np.zeros((5, 64, 64, 1), np.int64)},
            "the calibration samples do not fit input input_1: expected float32 [N,64,64,1], got int64 [5,64,64,1]",
        ),
        (
            {"input_1": np.zeros((MAX_SAMPLES + 1, 64, 64, 1), np.float32)},
            "the calibration file holds 2,001 samples; at most 2,000 are used: send fewer",
        ),
    ],
)
def test_samples_that_do_not_fit_are_refused(arrays: dict[str, np.ndarray], message: str, tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "samples.npz", **arrays)
    with pytest.raises(BadOptionsError) as refused:
        load_calibration(tmp_path / "samples.npz", [FER_SLOT], None, tmp_path, 50)
    assert str(refused.value) == message


def test_a_tar_gz_of_jpeg_and_png_images_in_one_folder_has_no_classes(tmp_path: Path) -> None:
    import tarfile

    from PIL import Image

    jpeg = io.BytesIO()
    Image.open(io.BytesIO(class_image(1, 0))).save(jpeg, "JPEG")
    with tarfile.open(tmp_path / "mixed.tar.gz", "w:gz") as archive:
        for name, data in (("shots/a.jpg", jpeg.getvalue()), ("shots/b.PNG", class_image(2, 1)), ("shots/.c.png", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    slot = InputSlot("image", "float32", (1, 24, 24, 3))
    calibration = load_calibration(tmp_path / "mixed.tar.gz", [slot], "-1,1", tmp_path, 50)
    assert [sample["image"].shape for sample in calibration.samples] == [(1, 24, 24, 3)] * 2  # hidden file skipped
    assert calibration.classes == ()  # one folder: nothing to group by
    with pytest.raises(BadOptionsError, match=r"^images fit an input shaped \[1,H,W,1\] or \[1,H,W,3\]; input x is"):
        load_calibration(tmp_path / "mixed.tar.gz", [InputSlot("x", "float32", (1, 10))], "0,1", tmp_path / "w", 50)


def test_an_archive_without_images_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("photos/readme.txt", "no pictures here")
    with pytest.raises(BadOptionsError, match=r"^the calibration file holds no JPEG or PNG images$"):
        load_calibration(tmp_path / "notes.zip", [FER_SLOT], "0,1", tmp_path, 50)


def test_a_file_over_the_calibration_limit_is_refused(labelled_images: Path, tmp_path: Path) -> None:
    with pytest.raises(BadOptionsError, match=r"the limit is 0.1 MB \(CONVBOT_MAX_CALIBRATION_MB\): send fewer"):
        load_calibration(labelled_images, [FER_SLOT], "0,1", tmp_path, 0.1)


def test_calibration_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.settings import load_settings

    assert load_settings().max_calibration_mb == 50
    monkeypatch.setenv("CONVBOT_MAX_CALIBRATION_MB", "5")
    assert load_settings().max_calibration_mb == 5


def test_an_npy_whose_header_lies_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "liar.npy"
    with path.open("wb") as stream:  # 4 TB promised, 16 bytes given
        np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
        stream.write(b"\0" * 16)
    with pytest.raises(BadOptionsError, match=r"cannot read the calibration array liar.npy: its header promises"):
        load_calibration(path, [FER_SLOT], None, tmp_path, 50)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (
            ["photos/cat/0.png", "../../escaped.png"],
            r"the archive contains a path outside its folder: '../../escaped.png'",
        ),
        ([f"photos/{i}.png" for i in range(MAX_ARCHIVE_MEMBERS + 1)], r"the archive has more than 4,000 entries"),
    ],
)
def test_a_hostile_archive_is_refused(members: list[str], message: str, tmp_path: Path) -> None:
    png = class_image(0, 0, (8, 8))
    with zipfile.ZipFile(tmp_path / "hostile.zip", "w") as archive:
        for name in members:
            archive.writestr(name, png)
    with pytest.raises(UnsafeArchiveError, match=message):
        load_calibration(tmp_path / "hostile.zip", [FER_SLOT], "0,1", tmp_path / "work", 50)
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path.parent / "escaped.png").exists()


def _write_sine_model(path: Path) -> Path:
    """A SavedModel whose SIN has no integer kernel in TFLite."""
    import tensorflow as tf

    class Sine(tf.Module):
        def __init__(self) -> None:
            self.kernel = tf.Variable(np.random.default_rng(0).random((3, 3, 1, 4), dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32, name="image")])
        def __call__(self, image: Any) -> Any:
            features = tf.math.sin(tf.nn.conv2d(image, self.kernel, 1, "SAME"))
            return {"scores": tf.nn.softmax(tf.reshape(features, [1, -1]))}

    module = Sine()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def test_an_op_with_no_integer_kernel_is_refused_by_name(tmp_path: Path) -> None:
    model = _write_sine_model(tmp_path / "sine")
    np.save(tmp_path / "samples.npy", np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32))
    with pytest.raises(ConversionError) as refused:
        _convert(model, tmp_path, "int8", tmp_path / "samples.npy")
    assert refused.value.message == (
        "TFLite int8: no integer kernel for SIN; a full-integer model cannot hold it: "
        "use --quant dynamic or float16, or replace that op in the model"
    )


def test_cli_converts_int8_io_from_images_and_prints_what_to_check(
    fer_model: Path, labelled_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    argv = ["convert", str(fer_model), "--to", "tflite", "--quant", "int8-io", "--calibration", str(labelled_images)]
    code = main([*argv, "--input-range", "-1,1", "-o", str(tmp_path)])
    shown = capsys.readouterr().out
    assert code == 0, shown  # within its tolerance on the user's samples
    assert "int8 on a few of your samples instead" in shown
    assert "tflite int8-io: top-1 agrees on " in shown and "% of your 12 images (quantized vs float; least: " in shown
    assert "input  input_1 -> tensor 0 'serving_default_input_1:0' int8 [?,64,64,1] scale " in shown
    print(shown)
