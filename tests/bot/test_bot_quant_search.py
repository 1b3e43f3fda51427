"""quant=compare and quant=auto in the chat, end to end: the real `convbot run` process and its worker, the fake
Bot API standing in for Telegram. compare sends every variant's file and the size-against-error chart as a photo;
auto (the menu's button) sends one file per target, the smallest that passes, and the chart."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.fake_api.driver import BotProcess, FakeApiThread, buttons, user
from bot.fake_api.records import SentDocument, SentPhoto
from tests.test_quant_auto import write_one_wide_weight_graph

FIRST_JOB = 300  # the worker imports TensorFlow, then converts and verifies seven variants
# Each variant's files: 8-bit weights (TFLite dynamic, TF.js uint8) are the ones this model cannot take. TF.js
# uint8 failing, uint8 with its worst weights kept in float16 is tried too, but this model's one weight in float16
# is the float16 model: no uint8-mixed file is made (the report says to use quant=float16).
VARIANTS = {
    "wide_float32.tflite": "none",
    "wide_float16.tflite": "float16",
    "wide_dynamic.tflite": "dynamic",
    "wide_float32_tfjs.zip": "none",
    "wide_float16_tfjs.zip": "float16",
    "wide_uint8_tfjs.zip": "uint8",
    "wide_uint16_tfjs.zip": "uint16",
}


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeApiThread, Path]]:
    root = tmp_path_factory.mktemp("bot")
    fake = FakeApiThread()
    bot = BotProcess(fake.api.root_url, root / "data", root / "bot.log", allowed_users="1", job_timeout_seconds="300")
    try:
        fake.wait_for(method="setMyCommands", timeout=120)  # post_init done: database, workers, commands
        yield fake, write_one_wide_weight_graph(root / "wide.pb")
    finally:
        bot.stop()
        fake.close()
        print(bot.log_path.read_text()[-5000:])


def _upload(fake: FakeApiThread, model: Path) -> Any:
    since = fake.mark()
    fake.do(fake.api.user_sends_document, user(1), model.read_bytes(), "wide.pb")
    return fake.wait_for_text(1, "Suggested outputs", since=since)


def _finished_job(fake: FakeApiThread, since: int) -> tuple[dict[str, SentDocument], SentPhoto]:
    """The files and the photo a job sent, once its report has come."""
    fake.wait_for_text(1, "report", since=since, timeout=FIRST_JOB)
    actions = fake.do(lambda: [a for a in fake.api.sent[since:] if a.chat_id == 1])
    documents = {a.document.file_name: a.document for a in actions if a.document is not None}
    photos = [a.photo for a in actions if a.photo is not None]
    assert len(photos) == 1, [a.method for a in actions]
    return documents, photos[0]


def _check_chart(photo: SentPhoto) -> dict[str, str]:
    """The chart is a real picture of the figures; returns the quantization its caption names as kept, by target."""
    from PIL import Image

    image = Image.open(io.BytesIO(photo.data))
    assert image.format == "PNG" and image.size == (1000, 500) == (photo.width, photo.height)
    colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 8  # markers in several colours, lines, text: not blank
    caption = photo.caption or ""
    assert len(caption) <= 1024 and caption.startswith("Size against error of each quantization")
    kept = dict(re.findall(r"^(tflite|tfjs): (\S+) \(.*: the smallest that passes", caption, re.MULTILINE))
    assert set(kept) == {"tflite", "tfjs"}, caption
    assert "dynamic (" in caption and "uint8 (" in caption and "over its 0.1 tolerance" in caption, caption
    return kept


def _weights(document: SentDocument) -> str:
    match = re.search(r"weights (\S+)\. Check: (\w+)", document.caption or "")
    assert match is not None, document.caption
    return match.group(1) + " " + match.group(2)


def test_compare_sends_every_variant_and_the_chart_then_auto_from_the_menu_the_smallest_passing(chat: Any) -> None:
    fake, model = chat
    _upload(fake, model)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, user(1), "/convert quant=compare")
    documents, photo = _finished_job(fake, since)

    assert set(documents) == set(VARIANTS), sorted(documents)
    for name, quantization in VARIANTS.items():
        assert _weights(documents[name]).split()[0] == quantization
    assert _weights(documents["wide_dynamic.tflite"]) == "dynamic failed"
    assert _weights(documents["wide_uint8_tfjs.zip"]) == "uint8 failed"
    winners = _check_chart(photo)
    assert winners["tflite"] != "dynamic" and winners["tfjs"] != "uint8"

    compared = documents
    menu = _upload(fake, model)  # auto, through the buttons
    for label in ("Quantization: none", "auto"):
        since = fake.mark()
        fake.do(fake.api.user_presses_button, user(1), menu.message_id, buttons(menu)[label])
        menu = fake.wait_for(lambda a: a.method == "editMessageReplyMarkup", since=since)
    assert "Quantization: auto" in buttons(menu)
    since = fake.mark()
    fake.do(fake.api.user_presses_button, user(1), menu.message_id, buttons(menu)["Convert now"])
    documents, photo = _finished_job(fake, since)

    kept = _check_chart(photo)
    assert kept == winners  # the choice compare's chart named
    tflite = [name for name in documents if name.endswith(".tflite")]
    tfjs = [name for name in documents if name.endswith("_tfjs.zip")]
    assert len(tflite) == 1 and len(tfjs) == 1 and len(documents) == 2, sorted(documents)
    assert _weights(documents[tflite[0]]) == f"{kept['tflite']} passed"
    assert _weights(documents[tfjs[0]]) == f"{kept['tfjs']} passed"
    # The same file compare sent, and no file compare sent for TFLite that passes is smaller.
    assert documents[tflite[0]].data == compared[tflite[0]].data
    passing = [d for name, d in compared.items() if name.endswith(".tflite") and _weights(d).endswith("passed")]
    assert len(documents[tflite[0]].data) == min(len(d.data) for d in passing)
