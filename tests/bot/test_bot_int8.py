"""int8 in the chat, end to end: the real `convbot run` process and its workers, the fake Bot API as the user.
Choosing int8 asks for samples, the next document is the calibration set (checked at once, refused in a line
when it cannot be one), and the .tflite that comes back runs in the TFLite interpreter with int8 inside."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.fake_api.driver import BotProcess, FakeApiThread, buttons, user
from tests.bot.test_bot_e2e import FIRST_JOB, send_model

ASKED = "a .zip of 20–500 images"
IMAGE_SHAPE = (8, 8, 3)  # bench/model_factory.py's Keras classifier: image (None, 8, 8, 3) -> probs (None, 4)


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeApiThread, BotProcess]]:
    root = tmp_path_factory.mktemp("bot_int8")
    fake = FakeApiThread()
    bot = BotProcess(fake.api.root_url, root / "data", root / "bot.log", allowed_users="21,22,23")
    try:
        fake.wait_for(method="setMyCommands", timeout=120)
        yield fake, bot
    finally:
        bot.stop()
        fake.close()
        print(bot.log_path.read_text()[-5000:])


def _samples_npz(count: int, shape: tuple[int, ...] = IMAGE_SHAPE) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, image=np.random.default_rng(3).uniform(0, 1, (count, *shape)).astype(np.float32))
    return buffer.getvalue()


def _png(class_index: int, index: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(10 * class_index + index)
    pixels = rng.integers(0, 120, (12, 12, 3)) + 120 * class_index  # the classes differ in brightness
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _class_folders_zip() -> bytes:
    return _zip({f"pets/{label}/{i}.png": _png(c, i) for c, label in enumerate(("cat", "dog")) for i in range(10)})


def _tensor_dtypes(tflite: Path) -> set[Any]:
    import tensorflow as tf

    return {detail["dtype"] for detail in tf.lite.Interpreter(model_path=str(tflite)).get_tensor_details()}


def test_int8_asks_for_samples_and_converts_on_the_next_document(chat: Any, keras_v3: Any, tmp_path: Path) -> None:
    fake, _ = chat
    ada = user(21)
    since = send_model(fake, ada, keras_v3.path, "classifier.keras", caption="/convert tflite quant=int8")
    asked = fake.wait_for_text(21, ASKED, since=since)
    assert "up to 50 MB" in asked.text and "/cancel" in asked.text
    assert not fake.do(fake.api.documents_sent, 21)  # nothing converted yet

    since = fake.mark()
    fake.do(fake.api.user_sends_document, ada, _samples_npz(30), "samples.npz")
    fake.wait_for_text(21, "Calibrating on 30 samples from samples.npz", since=since)
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 21, since=since, timeout=FIRST_JOB)
    assert document.document is not None and document.document.file_name == "classifier.tflite"
    assert "weights int8" in (document.text or "") and "passed" in (document.text or "")
    tflite = tmp_path / "classifier.tflite"
    tflite.write_bytes(document.document.data)
    assert np.int8 in _tensor_dtypes(tflite)  # full-integer inside, float at the edges (int8, not int8-io)

    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=str(tflite)).get_signature_runner()
    ((key, detail),) = runner.get_input_details().items()
    assert detail["dtype"] == np.float32
    (probs,) = runner(**{key: np.full((1, *IMAGE_SHAPE), 0.5, np.float32)}).values()
    assert probs.shape == (1, 4) and abs(float(probs.sum()) - 1.0) < 0.05

    since = fake.mark()
    fake.do(fake.api.user_sends_document, ada, keras_v3.path.read_bytes(), "again.keras")
    fake.wait_for_text(21, "Suggested outputs", since=since)  # the wait is over: a document is a model again


def test_images_in_class_folders_ask_the_range_and_give_the_top1_agreement(chat: Any) -> None:
    fake, _ = chat
    ada = user(21)  # again.keras is her current model
    since = fake.mark()
    fake.do(fake.api.user_sends_text, ada, "/convert tflite quant=int8-io")
    fake.wait_for_text(21, ASKED, since=since)
    fake.do(fake.api.user_sends_document, ada, _class_folders_zip(), "pets.zip")
    fake.wait_for_text(21, "Calibrating on 20 samples from pets.zip in 2 class folders", since=since)
    question = fake.wait_for_text(21, "how do its inputs see pixels", since=since)
    assert set(buttons(question)) == {"0,1", "-1,1", "0,255"}  # never guessed
    since = fake.mark()
    fake.do(fake.api.user_presses_button, ada, question.message_id, buttons(question)["0,1"])
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 21, since=since, timeout=FIRST_JOB)
    assert document.document is not None and document.document.file_name == "again.tflite"
    assert "weights int8-io" in (document.text or "")
    assert "Top-1 agrees with your model on" in (document.text or "") and "of your 20 images" in (document.text or "")


def test_what_cannot_be_samples_gets_a_short_answer_and_no_job(chat: Any, keras_v3: Any) -> None:
    fake, _ = chat
    bea = user(22)
    since = send_model(fake, bea, keras_v3.path, "classifier.keras")
    fake.wait_for_text(22, "Suggested outputs", since=since)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, bea, "/convert quant=int8")  # TF.js is a target too: refused before asking
    fake.wait_for_text(22, "int8 is for TFLite only", since=since)
    fake.do(fake.api.user_sends_text, bea, "/convert tflite quant=int8")
    fake.wait_for_text(22, ASKED, since=since)

    traversal = _zip({"../x.png": _png(0, 0), **{f"{i}.png": _png(0, i) for i in range(20)}})
    cases: list[tuple[bytes, str, int | None, str]] = [
        (traversal, "escape.zip", None, "a path outside its folder: '../x.png'"),
        (_zip({f"{i}.txt": b"" for i in range(4001)}), "many.zip", None, "more than 4,000 entries"),
        (_samples_npz(2001), "lots.npz", None, "holds 2,001 samples; at most 2,000"),
        (_samples_npz(30, (9, 9, 3)), "wrong.npz", None, "do not fit input image"),
        (b"not samples", "notes.txt", None, "not an .npz, an .npy, a .zip or a .tar.gz"),
        (b"x" * 100, "huge.zip", 60 * 1024 * 1024, "calibration samples may be at most 50.0 MB"),
    ]
    for content, name, declared, expected in cases:
        since = fake.mark()
        fake.do(fake.api.user_sends_document, bea, content, name, file_size=declared)
        reply = fake.wait_for_text(22, expected, since=since)
        assert "Traceback" not in reply.text and len(reply.text) < 300
        assert "/cancel" in reply.text  # the wait goes on
    downloads = fake.do(lambda: [d for d in fake.api.downloads])
    assert not any("huge" in str(d) for d in downloads)  # refused before download

    since = fake.mark()
    fake.do(fake.api.user_sends_text, bea, "/cancel")
    fake.wait_for_text(22, "Cancelled.", since=since)
    fake.do(fake.api.user_sends_text, bea, "/jobs")
    fake.wait_for_text(22, "no jobs", since=since)
    since = send_model(fake, bea, keras_v3.path, "next.keras")  # after /cancel a document is a model again
    fake.wait_for_text(22, "Suggested outputs", since=since)
