"""The bot end to end: the real `convbot run` process, real conversions in its workers, and the
fake Bot API on 127.0.0.1 standing in for Telegram and its users."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import model_factory
from bot.fake_api.driver import BotProcess, FakeApiThread, buttons, user
from tests.converter.conftest import random_input, run_tflite

FIRST_JOB = 240  # the bot's worker imports TensorFlow first: 20-40 s on a busy 2-core machine


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeApiThread, BotProcess]]:
    root = tmp_path_factory.mktemp("bot")
    fake = FakeApiThread()
    bot = BotProcess(
        fake.api.root_url,
        root / "data",
        root / "bot.log",
        allowed_users="1,2,3,4,5,6,7,8,9,10,12,13",
        admins="1",
        daily_jobs="6",
        test_hook="hang@slow_",
        job_timeout_seconds="120",
    )
    try:
        fake.wait_for(method="setMyCommands", timeout=120)  # post_init done: database, workers, commands
        yield fake, bot
    finally:
        bot.stop()
        fake.close()
        print(bot.log_path.read_text()[-5000:])


def send_model(fake: FakeApiThread, who: Any, path: Path, name: str, caption: str | None = None) -> int:
    since = fake.mark()
    fake.do(fake.api.user_sends_document, who, path.read_bytes(), name, caption=caption)
    return since


def test_upload_choose_outputs_with_buttons_convert_and_get_files(chat: Any, multihead_graph: Any, tf: Any) -> None:
    fake, _ = chat
    ann = user(1)
    since = send_model(fake, ann, multihead_graph.path, "posenet.pb")
    summary = fake.wait_for_text(1, "Suggested outputs", since=since)
    assert "frozen-graph" in summary.text and "Readiness: TFLite ok; TF.js ok" in summary.text
    outputs_part = summary.text.split("Suggested outputs:")[1]
    assert [line.split()[1] for line in outputs_part.strip().splitlines()[:4]] == [
        "heatmap",
        "offset_2",
        "displacement_fwd_2",
        "displacement_bwd_2",
    ]
    assert "• image float32 [1,33,33,3]" in summary.text

    since = fake.mark()
    fake.do(fake.api.user_presses_button, ann, summary.message_id, buttons(summary)["Choose outputs"])
    picker = fake.wait_for(lambda a: "Choose the outputs (4 chosen)" in (a.text or ""), since=since)
    for head in ("offset_2", "displacement_fwd_2", "displacement_bwd_2"):  # untick all but the heatmap
        data = buttons(picker)["✅ " + head]
        since = fake.mark()
        fake.do(fake.api.user_presses_button, ann, summary.message_id, data)
        picker = fake.wait_for(lambda a: a.method == "editMessageText", since=since)
    assert "(1 chosen)" in picker.text and "✅ heatmap" in buttons(picker)
    since = fake.mark()
    fake.do(fake.api.user_presses_button, ann, summary.message_id, buttons(picker)["Done"])
    menu = fake.wait_for(lambda a: a.method == "editMessageReplyMarkup", since=since)
    since = fake.mark()
    fake.do(fake.api.user_presses_button, ann, summary.message_id, buttons(menu)["Convert now"])
    fake.wait_for_text(1, "Job #", since=since)
    report = fake.wait_for_text(1, "report", since=since, timeout=FIRST_JOB)
    assert "Timings:" in report.text and "tflite: in image→image" in report.text
    # Each file goes out as soon as it is converted and verified, TFLite first, the status saying which is on its
    # way; the job is done after the last, and the report comes at the end.
    actions = fake.do(lambda: [a for a in fake.api.sent[since:] if a.chat_id == 1])
    order = [
        a.document.file_name if a.document else (a.text or "").splitlines()[0]
        for a in actions
        if a.document or "sending" in (a.text or "") or "done." in (a.text or "") or "report" in (a.text or "")
    ]
    job = order[0].split(":")[0]  # "Job #N"
    assert order == [
        f"{job}: sending posenet.tflite…",
        "posenet.tflite",
        f"{job}: sending posenet_tfjs.zip…",
        "posenet_tfjs.zip",
        f"{job} done.",
        f"{job} report",
    ], order

    documents = {d.file_name: d for d in fake.do(fake.api.documents_sent, 1)}
    assert set(documents) == {"posenet.tflite", "posenet_tfjs.zip"}
    assert "passed" in documents["posenet.tflite"].caption
    tflite = summary_dir(chat) / "posenet.tflite"
    tflite.write_bytes(documents["posenet.tflite"].data)
    outputs = run_tflite(tflite, {"image": random_input((1, 33, 33, 3))})
    assert list(outputs) == ["heatmap"] and outputs["heatmap"].shape == (1, 9, 9, 17)
    with zipfile.ZipFile(io.BytesIO(documents["posenet_tfjs.zip"].data)) as archive:
        names = set(archive.namelist())
    assert "model.json" in names and any(name.endswith(".bin") for name in names)


def summary_dir(chat: Any) -> Path:
    folder = chat[1].log_path.parent / "received"
    folder.mkdir(exist_ok=True)
    return folder


def test_one_line_convert_nodes_filter_jobs_and_job(chat: Any, multihead_graph: Any) -> None:
    fake, _ = chat
    bob = user(2)
    since = send_model(fake, bob, multihead_graph.path, "pose.pb")
    fake.wait_for_text(2, "Suggested outputs", since=since)

    since = fake.mark()
    fake.do(fake.api.user_sends_text, bob, "/nodes offset")
    listing = fake.wait_for_text(2, "Nodes of pose.pb", since=since)
    assert "offset_2" in listing.text and "heatmap" not in listing.text

    since = fake.mark()
    fake.do(fake.api.user_sends_text, bob, "/convert tflite out=offset_2 quant=float16")
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 2, since=since, timeout=FIRST_JOB)
    assert document.document is not None and document.document.file_name == "pose.tflite"
    assert "weights float16" in (document.text or "")
    fake.wait_for_text(2, "report", since=since)

    since = fake.mark()
    fake.do(fake.api.user_sends_text, bob, "/jobs")
    jobs = fake.wait_for_text(2, "Your recent jobs", since=since)
    job_id = int(jobs.text.split("#")[1].split()[0])
    assert "pose.pb → tflite: succeeded" in jobs.text

    since = fake.mark()
    fake.do(fake.api.user_sends_text, bob, f"/job #{job_id}")
    again = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 2, since=since)
    assert again.document is not None and again.document.file_name == "pose.tflite"

    for who, text in ((bob, "/job 99999"), (user(3), f"/job {job_id}")):
        since = fake.mark()
        fake.do(fake.api.user_sends_text, who, text)
        fake.wait_for_text(who.id, "not found", since=since)


def test_a_failed_conversion_says_why_without_a_traceback(chat: Any) -> None:
    fake, _ = chat
    since = fake.mark()
    fake.do(fake.api.user_sends_text, user(2), "/convert tflite out=heatmapp")  # pose.pb is Bob's current model
    failure = fake.wait_for_text(2, "failed", since=since, timeout=FIRST_JOB)
    assert "no node named heatmapp; closest: heatmap" in failure.text
    assert failure.text.startswith("Job #") and "Traceback" not in failure.text


def test_bad_input_gets_short_specific_answers(chat: Any, multihead_graph: Any, tmp_path: Path) -> None:
    fake, _ = chat
    cat = user(3)
    cases: list[tuple[Any, str]] = [
        (lambda: fake.do(fake.api.user_sends_photo, cat), "as a file"),
        (lambda: fake.do(fake.api.user_sends_sticker, cat), "as a file"),
        (lambda: fake.do(fake.api.user_sends_text, cat, "hello"), "Send me a model file"),
        (lambda: fake.do(fake.api.user_sends_text, cat, "/nodes"), "Send me a model first"),
        (
            lambda: fake.do(fake.api.user_sends_document, cat, bytes(range(256)) * 50, "noise.pb"),
            "I cannot use noise.pb: not a model",
        ),
        (
            lambda: fake.do(fake.api.user_sends_document, cat, multihead_graph.path.read_bytes()[:5000], "cut.pb"),
            "truncated",
        ),
        (lambda: fake.do(fake.api.user_sends_document, cat, _bomb(), "bomb.zip"), "20 times"),
        (
            lambda: fake.do(fake.api.user_sends_document, cat, b"x" * 100, "huge.pb", file_size=30 * 1024 * 1024),
            "the largest model I accept is 20.0 MB",
        ),
    ]
    for send, expected in cases:
        since = fake.mark()
        send()
        reply = fake.wait_for_text(3, expected, since=since)
        assert "Traceback" not in reply.text and len(reply.text) < 400
    downloads = fake.do(lambda: [d for d in fake.api.downloads])
    assert not any("huge" in str(d) for d in downloads)  # refused before download
    since = send_model(fake, cat, multihead_graph.path, "pose3.pb", caption="/convert tflite quant=int8")
    fake.wait_for_text(3, "int8 is calibrated on samples of your model's inputs", since=since)
    fake.do(fake.api.user_sends_text, cat, "/cancel")  # tests/bot/test_bot_int8.py goes on from here
    fake.wait_for_text(3, "Cancelled.", since=since)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, cat, "/help")
    fake.wait_for_text(3, "Commands:", since=since)  # still up, still answering


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/saved_model.pb", bytes(5_000_000))
    return buffer.getvalue()


def test_buttons_of_an_earlier_upload_have_expired(chat: Any, multihead_graph: Any) -> None:
    fake, _ = chat
    cat = user(3)
    since = send_model(fake, cat, multihead_graph.path, "first.pb")
    old = fake.wait_for_text(3, "Suggested outputs", since=since)
    since = send_model(fake, cat, multihead_graph.path, "second.pb")
    fake.wait_for_text(3, "Suggested outputs", since=since)
    since = fake.mark()
    fake.do(fake.api.user_presses_button, cat, old.message_id, buttons(old)["Choose inputs"])
    fake.wait_for_text(3, "This menu has expired", since=since)


def test_strangers_are_refused_politely(chat: Any, multihead_graph: Any) -> None:
    fake, _ = chat
    stranger = user(99)
    calls_before = fake.do(lambda: fake.api.calls.get("getFile", 0))
    since = send_model(fake, stranger, multihead_graph.path, "pose.pb")
    refusal = fake.wait_for_text(99, "private", since=since)
    assert "99" in refusal.text
    assert fake.do(lambda: fake.api.calls.get("getFile", 0)) == calls_before  # nothing of theirs downloaded


def test_chinese_user_gets_chinese(chat: Any) -> None:
    fake, _ = chat
    since = fake.mark()
    fake.do(fake.api.user_sends_text, user(4, "zh-hans"), "/help")
    reply = fake.wait_for_text(4, "命令", since=since)
    assert "/convert" in reply.text


def test_cancel_a_running_job(chat: Any, multihead_graph: Any) -> None:
    fake, _ = chat
    eve = user(5)
    since = send_model(fake, eve, multihead_graph.path, "slow_pose.pb")  # the test hook makes it hang
    fake.wait_for_text(5, "Suggested outputs", since=since)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, eve, "/convert tflite")
    fake.wait_for(lambda a: a.chat_id == 5 and "loading" in (a.text or ""), since=since, timeout=FIRST_JOB)
    fake.do(fake.api.user_sends_text, eve, "/cancel 424242")  # not her job: said so, her job goes on
    fake.wait_for_text(5, "Job 424242 is not one of yours that is queued or running", since=since)
    fake.do(fake.api.user_sends_text, eve, "/cancel")
    fake.wait_for_text(5, "cancelled", since=since)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, eve, "/cancel")
    fake.wait_for_text(5, "Nothing to cancel", since=since)


def test_flood_limit_during_a_job_is_waited_out(chat: Any, multihead_graph: Any) -> None:
    fake, _ = chat
    fay = user(6)
    since = send_model(fake, fay, multihead_graph.path, "pose6.pb")
    fake.wait_for_text(6, "Suggested outputs", since=since)
    fake.do(fake.api.fail_next, "sendDocument", 429, 1)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, fay, "/convert tfjs")
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 6, since=since, timeout=FIRST_JOB)
    assert document.document is not None and document.document.file_name == "pose6_tfjs.zip"
    failed = fake.do(lambda: [f for f in fake.api.failed if f.method == "sendDocument"])
    assert failed and failed[-1].error_code == 429


def test_network_errors_are_retried(chat: Any) -> None:
    fake, _ = chat
    fay = user(6)  # pose6.pb is her current model
    fake.do(fake.api.fail_next, "sendMessage", 502, None, times=2)  # Bad Gateway: a NetworkError in PTB
    since = fake.mark()
    fake.do(fake.api.user_sends_text, fay, "/convert tflite quant=dynamic")
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 6, since=since, timeout=FIRST_JOB)
    assert document.document is not None and document.document.file_name == "pose6.tflite"
    failed = fake.do(lambda: [f for f in fake.api.failed if f.method == "sendMessage" and f.error_code == 502])
    assert len(failed) == 2


def test_unknown_dimensions_are_asked_for(chat: Any, multihead_graph: Any, tmp_path: Path) -> None:
    fake, _ = chat
    gus = user(7)
    dynamic = model_factory.write_with_unknown_dims(multihead_graph.path, tmp_path / "dynamic.pb")
    since = send_model(fake, gus, dynamic, "dynamic.pb")
    fake.wait_for_text(7, "Suggested outputs", since=since)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, gus, "/convert tflite out=heatmap")
    fake.wait_for_text(7, "Reply with the full shape", since=since)
    fake.do(fake.api.user_sends_text, gus, "1,33,33,3")
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 7, since=since, timeout=FIRST_JOB)
    assert document.document is not None and document.document.file_name == "dynamic.tflite"


def _graph_with_a_scalar_input(path: Path) -> Path:
    """probs = softmax(image * gain), where gain's rank is not recorded (as rvm's downsample_ratio)."""
    from converter.protos import GraphDef

    graph = GraphDef()
    image = graph.node.add(name="image", op="Placeholder")
    image.attr["dtype"].type = 1  # DT_FLOAT
    for size in (1, 4):
        image.attr["shape"].shape.dim.add().size = size
    gain = graph.node.add(name="gain", op="Placeholder")
    gain.attr["dtype"].type = 1
    gain.attr["shape"].shape.unknown_rank = True
    graph.node.add(name="scaled", op="Mul", input=["image", "gain"]).attr["T"].type = 1
    graph.node.add(name="probs", op="Softmax", input=["scaled"]).attr["T"].type = 1
    path.write_bytes(graph.SerializeToString())
    return path


def test_a_scalar_input_is_asked_for_and_answered_scalar(chat: Any, tmp_path: Path, tf: Any) -> None:
    fake, _ = chat
    lee = user(10)
    since = send_model(fake, lee, _graph_with_a_scalar_input(tmp_path / "gain.pb"), "gain.pb")
    fake.wait_for_text(10, "Suggested outputs", since=since)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, lee, "/convert tflite out=probs")
    question = fake.wait_for_text(10, "Reply with the full shape", since=since)
    assert "gain" in question.text and "scalar" in question.text
    fake.do(fake.api.user_sends_text, lee, "scalar")
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 10, since=since, timeout=FIRST_JOB)
    assert document.document is not None and document.document.file_name == "gain.tflite"
    assert "passed" in document.document.caption
    tflite = tmp_path / "gain.tflite"
    tflite.write_bytes(document.document.data)
    image = random_input((1, 4), seed=4)
    got = run_tflite(tflite, {"image": image, "gain": np.float32(3.0)})["probs"]
    np.testing.assert_allclose(got, tf.nn.softmax(image * 3.0).numpy(), rtol=1e-5)


def test_zipped_tfjs_graph_model_to_tflite_pb_and_saved_model(chat: Any, tmp_path: Path, tf: Any) -> None:
    """A real TF.js model (MIT, tests/data/tfjs_emotion) sent as one zip; the .tflite computes what TF.js does."""
    from converter.tfjs_runtime import run_tfjs_model

    fake, _ = chat
    hana = user(8)
    model_dir = Path(__file__).resolve().parents[1] / "data" / "tfjs_emotion"
    upload = tmp_path / "emotion_web.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for file in model_dir.iterdir():
            archive.write(file, f"web_model/{file.name}")
    since = send_model(fake, hana, upload, "emotion_web.zip")
    summary = fake.wait_for_text(8, "Suggested outputs", since=since)
    assert "tfjs-graph" in summary.text and "• input_1 float32 [?,64,64,1]" in summary.text

    since = fake.mark()
    fake.do(fake.api.user_sends_text, hana, "/nodes Identity")
    listing = fake.wait_for_text(8, "Nodes of emotion_web.zip", since=since)
    assert "Identity" in listing.text

    since = fake.mark()
    fake.do(fake.api.user_sends_text, hana, "/convert tflite,pb,savedmodel")
    report = fake.wait_for_text(8, "report", since=since, timeout=FIRST_JOB)
    assert "Conversion: the graph rebuilt from your TF.js model, run in TensorFlow, matches it" in report.text
    documents = {d.file_name: d for d in fake.do(fake.api.documents_sent, 8)}
    assert set(documents) == {"emotion_web.tflite", "emotion_web.pb", "emotion_web_saved_model.zip"}
    assert all("passed" in document.caption for document in documents.values())
    tflite = tmp_path / "emotion_web.tflite"
    tflite.write_bytes(documents["emotion_web.tflite"].data)
    face = random_input((1, 64, 64, 1), seed=8)
    got = run_tflite(tflite, {"input_1": face})["Identity"]
    expected = run_tfjs_model(model_dir, {"input_1": face}, ["Identity"]).outputs["Identity"]
    assert got.shape == (1, 7) and abs(got - expected).max() < 1e-5


def test_tf1_checkpoint_zip_to_a_saved_model_with_buttons(chat: Any, tmp_path: Path) -> None:
    """A Saver's .meta/.index/.data in one zip: the training graph's labels are not asked for."""
    fake, _ = chat
    ida = user(9)
    checkpoint = model_factory.write_tf1_checkpoint(tmp_path / "mnist_ckpt.zip")
    since = send_model(fake, ida, checkpoint.path, "mnist_ckpt.zip")
    summary = fake.wait_for_text(9, "Suggested outputs", since=since)
    assert "tf1-checkpoint" in summary.text and "• x float32 [?,8,8,3]" in summary.text
    assert "labels" not in summary.text.split("Suggested outputs")[0]

    since = fake.mark()
    fake.do(fake.api.user_presses_button, ida, summary.message_id, buttons(summary)["Targets: all"])
    choices = fake.wait_for(lambda a: a.method == "editMessageReplyMarkup", since=since)
    assert {"pb", "savedmodel", "tflite", "tfjs"} <= {name.removeprefix("✅ ") for name in buttons(choices)}
    for button in ("savedmodel", "✅ tflite", "✅ tfjs"):  # tick savedmodel, untick the defaults
        since = fake.mark()
        fake.do(fake.api.user_presses_button, ida, summary.message_id, buttons(choices)[button])
        choices = fake.wait_for(lambda a: a.method == "editMessageReplyMarkup", since=since)
    assert {"✅ savedmodel", "tflite", "tfjs", "pb"} <= set(buttons(choices))
    since = fake.mark()
    fake.do(fake.api.user_presses_button, ida, summary.message_id, buttons(choices)["Back"])
    menu = fake.wait_for(lambda a: a.method == "editMessageReplyMarkup", since=since)
    assert "Targets: savedmodel" in buttons(menu)
    since = fake.mark()
    fake.do(fake.api.user_presses_button, ida, summary.message_id, buttons(menu)["Convert now"])
    fake.wait_for_text(9, "report", since=since, timeout=FIRST_JOB)
    (document,) = fake.do(fake.api.documents_sent, 9)
    assert document.file_name == "mnist_ckpt_saved_model.zip" and "passed" in document.caption
    with zipfile.ZipFile(io.BytesIO(document.data)) as archive:
        assert "mnist_ckpt_saved_model/saved_model.pb" in archive.namelist()


def test_a_file_that_fails_to_run_is_not_sent_and_the_job_says_so(chat: Any, tmp_path: Path) -> None:
    """TF.js cannot execute an Einsum "ii->i": the .tflite is sent, the TF.js zip is not, the status message and
    the report say why, and /jobs shows the job as partial."""
    fake, _ = chat
    una = user(12)
    model = model_factory.write_einsum_diagonal_graph(tmp_path / "diag.pb").path
    since = send_model(fake, una, model, "diag.pb", caption="/convert all")
    report = fake.wait_for_text(12, "report", since=since, timeout=FIRST_JOB)
    assert "Not sent: tfjs (TF.js failed at execute: Found duplicate axes" in report.text
    documents = fake.do(lambda: [a for a in fake.api.sent[since:] if a.method == "sendDocument" and a.chat_id == 12])
    assert [a.document.file_name for a in documents] == ["diag.tflite"]
    assert documents[0].document.caption.startswith("diag.tflite") and "passed" in documents[0].document.caption
    status = fake.wait_for_text(12, "not every file is sent", since=since)
    assert "tfjs: TF.js failed at execute" in status.text

    since = fake.mark()
    fake.do(fake.api.user_sends_text, una, "/jobs")
    assert "diag.pb → tflite,tfjs: partial" in fake.wait_for_text(12, "Your recent jobs", since=since).text


def test_a_file_outside_its_tolerance_says_so_first_in_its_caption(chat: Any, tmp_path: Path, tf: Any) -> None:
    """float16 weights move this model's output by about 17 % of its range: the user asked for float16, so the file
    is sent, and its caption begins with that verdict in words and what to do."""
    fake, _ = chat
    vic = user(13)
    model = model_factory.write_cancelling_weights_graph(tmp_path / "margin.pb").path
    since = send_model(fake, vic, model, "margin.pb", caption="/convert tfjs quant=float16")
    document = fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 13, since=since, timeout=FIRST_JOB)
    caption = document.document.caption
    verdict = (
        r"⚠ This file does not compute what your model computes: its outputs differ by up to [1-3]\d % of their "
        r"range \(allowed: 1 %\)\. Stored as float16, this model's outputs move that much: keep float32, or try "
        r"quant=uint16\|auto\."  # this target's other quantizations
    )
    assert re.match(verdict, caption), caption
    assert "margin_tfjs.zip" in caption and "Check: failed" in caption
    report = fake.wait_for_text(13, "report", since=since)
    assert "⚠ tfjs float16: This file does not compute what your model computes" in report.text
    assert "tfjs float16: float16 moves this model's outputs by up to" in report.text  # the converter's advice


def test_daily_quota(chat: Any) -> None:
    fake, _ = chat
    gus = user(7)  # one job so far; the limit is 6 a day, and identical jobs come from the cache
    for _ in range(5):
        since = fake.mark()
        fake.do(fake.api.user_sends_text, gus, "/convert tflite out=heatmap shape=image:1,33,33,3")
        fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == 7, since=since, timeout=FIRST_JOB)
    since = fake.mark()
    fake.do(fake.api.user_sends_text, gus, "/convert tflite out=heatmap shape=image:1,33,33,3")
    fake.wait_for_text(7, "daily limit", since=since)


def test_the_bot_process_never_loads_tensorflow(chat: Any) -> None:
    _, bot = chat
    maps = bot.maps()
    assert "python" in maps
    assert "tensorflow" not in maps.lower()


def test_admin_stats(chat: Any) -> None:
    fake, _ = chat
    since = fake.mark()
    fake.do(fake.api.user_sends_text, user(1), "/stats")
    stats = fake.wait_for_text(1, "Users:", since=since)
    assert "succeeded" in stats.text
    since = fake.mark()
    fake.do(fake.api.user_sends_text, user(2), "/stats")
    fake.wait_for_text(2, "for admins", since=since)


def test_restart_tells_users_and_finishes_their_job(multihead_graph: Any, tmp_path: Path) -> None:
    """The bot dies with a job running; the next start tells its user within 30 s and re-runs it."""
    fake = FakeApiThread()
    data = tmp_path / "data"
    first = BotProcess(fake.api.root_url, data, tmp_path / "first.log", test_hook="hang@stuck_")
    try:
        fake.wait_for(method="setMyCommands", timeout=120)
        ida = user(11)
        since = send_model(fake, ida, multihead_graph.path, "stuck_pose.pb")
        fake.wait_for_text(11, "Suggested outputs", since=since)
        fake.do(fake.api.user_sends_text, ida, "/convert tflite")
        fake.wait_for(lambda a: a.chat_id == 11 and "loading" in (a.text or ""), since=since, timeout=FIRST_JOB)
        first.stop(kill=True)  # SIGKILL: no shutdown code runs; its worker dies with it

        since = fake.mark()
        second = BotProcess(fake.api.root_url, data, tmp_path / "second.log")
        try:
            notice = fake.wait_for_text(11, "interrupted by a restart", since=since, timeout=30)
            assert notice.method == "sendMessage"
            document = fake.wait_for(
                lambda a: a.method == "sendDocument" and a.chat_id == 11, since=since, timeout=FIRST_JOB
            )
            assert document.document is not None and document.document.file_name == "stuck_pose.tflite"
        finally:
            second.stop()
    finally:
        first.stop()
        fake.close()


def test_a_fresh_bot_runs_a_command_sent_while_reading_and_a_caption_command(
    multihead_graph: Any, tmp_path: Path
) -> None:
    """On a bot that has just started (its worker still importing TensorFlow): `/convert` typed 0.2 s after the
    upload waits for the upload to be read and runs on it, never "send me a model first"; a document whose caption
    is `/convert tfjs quant=float16` is converted as the caption says. Other chats are not held up meanwhile."""
    import time

    fake = FakeApiThread()
    bot = BotProcess(fake.api.root_url, tmp_path / "data", tmp_path / "bot.log")
    try:
        fake.wait_for(method="setMyCommands", timeout=120)
        kim, lou = user(21), user(22)
        since = send_model(fake, kim, multihead_graph.path, "pose.pb")
        time.sleep(0.2)
        fake.do(fake.api.user_sends_text, kim, "/convert tflite out=heatmap")
        fake.do(fake.api.user_sends_text, lou, "/help")
        fake.wait_for_text(22, "/convert", since=since)  # another chat's answer does not wait for Kim's reading
        document = fake.wait_for(
            lambda a: a.method == "sendDocument" and a.chat_id == 21, since=since, timeout=FIRST_JOB
        )
        assert document.document is not None and document.document.file_name == "pose.tflite"
        assert "passed" in document.document.caption
        said = fake.do(lambda: [a.text or "" for a in fake.api.sent[since:] if a.chat_id == 21])
        assert not any("model first" in text for text in said), said

        since = fake.mark()
        fake.do(
            fake.api.user_sends_document,
            lou,
            multihead_graph.path.read_bytes(),
            "pose.pb",
            caption="/convert tfjs quant=float16",
        )
        document = fake.wait_for(
            lambda a: a.method == "sendDocument" and a.chat_id == 22, since=since, timeout=FIRST_JOB
        )
        assert document.document is not None and document.document.file_name == "pose_tfjs.zip"
        assert "weights float16" in document.document.caption
        fake.wait_for_text(22, "Suggested outputs", since=since)  # the summary was shown first, as for any upload
    finally:
        bot.stop()
        fake.close()
