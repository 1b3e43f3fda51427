"""How long a user waits: upload -> last verified file in the chat, against a bare warm conversion of the same model.

Run: .venv/bin/python -m bench.reply_time [--runs 3]

Side by side in one run, on a MobileNet-class frozen graph (MobileNet v1, 224x224, 4.2 M weights: about 17 MB,
random weights, built here) and on the Keras model in tests/data:
- bare: `convert_in_process` to tflite,tfjs without verification, in this process once TensorFlow is loaded;
- bot: the real `convbot run` against the fake Bot API on 127.0.0.1, warm (one job done before); the model sent
  as a document with the caption `/convert tflite,tfjs`; timed from the upload to the last file in the chat. The
  split comes from the chat (upload and reading: until the summary) and the job's own timings (conversion,
  verification); the rest is queueing, moving files and sending.
Each bot run sends a copy that differs by a byte outside the model (so no run is a cache hit). Medians.
Then, on a bot started 1 s earlier, `/convert` 0.2 s after the upload: the files arrive, no "send a model first".
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.fake_api.driver import BotProcess, FakeApiThread, user
from cli.render import table
from converter.conversion import convert_in_process
from converter.options import ConversionOptions

ROOT = Path(__file__).resolve().parents[1]
KERAS_MODEL = ROOT / "tests" / "data" / "fer_emotion_model.hdf5"
CONVERT = "/convert tflite,tfjs"
TIMINGS = re.compile(r"Timings: (.*)")


@dataclass
class BotRun:
    total: float
    reading: float
    conversion: float
    verification: float

    @property
    def rest(self) -> float:
        return self.total - self.reading - self.conversion - self.verification


def write_mobilenet(path: Path, seed: int) -> Path:
    """MobileNet v1 (224x224x3 -> 1000 classes) with seeded random weights, frozen: a 17 MB GraphDef."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNet(weights=None, input_shape=(224, 224, 3))
    function = tf.function(lambda image: model(image, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, 224, 224, 3], tf.float32, name="image"))
    frozen = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    path.write_bytes(frozen.SerializeToString())
    return path


def copy_with_marker(model: Path, dest: Path, marker: int) -> Path:
    """The same model with a different sha256: a frozen graph gets an unused versions.bad_consumers entry, an HDF5
    file an attribute. Neither changes what the model computes."""
    shutil.copy(model, dest)
    if dest.suffix == ".pb":
        from converter.protos import GraphDef

        graph = GraphDef()
        graph.ParseFromString(dest.read_bytes())
        graph.versions.bad_consumers.append(1_000_000 + marker)
        dest.write_bytes(graph.SerializeToString())
    else:
        import h5py

        with h5py.File(dest, "a") as file:
            file.attrs["bench_marker"] = marker
    return dest


def bare_conversion(model: Path, work: Path, runs: int) -> float:
    """Median seconds of a warm conversion to tflite,tfjs without verification (the first run warms up)."""
    options = ConversionOptions(verify=False)
    times = []
    for number in range(runs + 1):
        started = time.perf_counter()
        convert_in_process(model, work / f"bare{number}", options, work / f"bare_work{number}")
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def bot_run(fake: Any, who: Any, model: Path, name: str) -> BotRun:
    """One upload with the caption command, timed by the chat: until the summary, until the second file."""
    since = fake.mark()
    started = time.perf_counter()
    fake.do(fake.api.user_sends_document, who, model.read_bytes(), name, caption=CONVERT)
    fake.wait_for_text(who.id, "Suggested outputs", since=since, timeout=300)
    reading = time.perf_counter() - started
    first = fake.wait_for(lambda a: a.chat_id == who.id and a.document is not None, since=since, timeout=600)
    after_first = fake.do(lambda: fake.api.sent.index(first)) + 1
    fake.wait_for(lambda a: a.chat_id == who.id and a.document is not None, since=after_first, timeout=600)
    total = time.perf_counter() - started
    report = fake.wait_for_text(who.id, " report", since=since, timeout=600)
    found = TIMINGS.search(report.text or "")
    timings = found.group(1) if found else ""
    return BotRun(
        total=total,
        reading=reading,
        conversion=stage_seconds(timings, lambda stage: stage != "validate"),
        verification=stage_seconds(timings, lambda stage: stage == "validate"),
    )


def stage_seconds(timings: str, keep: Callable[[str], bool]) -> float:
    """The seconds of the stages `keep` accepts, from a report's "loading 0.0 s, convert_tflite 1.9 s, ..."."""
    total = 0.0
    for part in timings.split(", "):
        stage, number, _unit = part.rsplit(" ", 2)
        total += float(number) if keep(stage) else 0.0
    return total


def warm_bot_runs(models: dict[str, Path], work: Path, runs: int) -> dict[str, list[BotRun]]:
    fake = FakeApiThread()
    bot = BotProcess(fake.api.root_url, work / "data", work / "bot.log", job_timeout_seconds="900")
    results: dict[str, list[BotRun]] = {name: [] for name in models}
    try:
        fake.wait_for(method="setMyCommands", timeout=180)
        for number, (name, model) in enumerate(models.items()):
            who = user(100 + number)
            for run in range(runs + 1):  # run 0 warms the worker (TensorFlow, Node.js, TF.js) up
                copy = copy_with_marker(model, work / f"{run}_{model.name}", run)
                timed = bot_run(fake, who, copy, model.name)
                if run:
                    results[name].append(timed)
    finally:
        bot.stop()
        fake.close()
    return results


def fresh_bot_convert_after_upload(model: Path, work: Path) -> tuple[float, bool]:
    """On a bot started 1 s earlier, `/convert` 0.2 s after the upload: seconds to the second file, and whether
    any reply said there was no model."""
    fake = FakeApiThread()
    bot = BotProcess(fake.api.root_url, work / "fresh", work / "fresh.log", job_timeout_seconds="900")
    try:
        fake.wait_for(method="setMyCommands", timeout=180)
        time.sleep(1.0)
        who = user(7)
        since = fake.mark()
        started = time.perf_counter()
        fake.do(fake.api.user_sends_document, who, model.read_bytes(), model.name)
        time.sleep(0.2)
        fake.do(fake.api.user_sends_text, who, CONVERT)
        fake.wait_for_text(who.id, " report", since=since, timeout=900)
        seconds = time.perf_counter() - started
        said = fake.do(lambda: [a.text or "" for a in fake.api.sent[since:] if a.chat_id == who.id])
        files = fake.do(lambda: sum(1 for a in fake.api.sent[since:] if a.chat_id == who.id and a.document))
        return seconds, files == 2 and not any("model first" in text for text in said)
    finally:
        bot.stop()
        fake.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="convbot-reply-") as scratch:
        work = Path(scratch)
        models = {
            "mobilenet (frozen graph, 17 MB)": write_mobilenet(work / "mobilenet.pb", seed=0),
            "fer (Keras)": KERAS_MODEL,
        }
        bare = {
            name: bare_conversion(model, work / f"bare-{number}", args.runs)
            for number, (name, model) in enumerate(models.items())
        }
        bot = warm_bot_runs(models, work, args.runs)
        fresh_seconds, fresh_ok = fresh_bot_convert_after_upload(KERAS_MODEL, work)
    rows = []
    for name in models:
        runs = bot[name]
        total = statistics.median(r.total for r in runs)
        conversion = statistics.median(r.conversion for r in runs)
        verification = statistics.median(r.verification for r in runs)
        rows.append(
            [
                name,
                f"{bare[name]:.2f}",
                f"{total:.2f}",
                f"{total / bare[name]:.2f}x",
                f"{statistics.median(r.reading for r in runs):.2f}",
                f"{conversion:.2f}",
                f"{verification:.2f}",
                f"{verification / conversion:.0%}",
                f"{statistics.median(r.rest for r in runs):.2f}",
            ]
        )
    headers = [
        "model",
        "bare conversion s",
        "upload -> last file s",
        "ratio",
        "upload+reading s",
        "conversion s",
        "verification s",
        "verif/conv",
        "queue+sending s",
    ]
    print(f"medians of {args.runs} runs; bot warm; both targets (tflite, tfjs)")
    print(table(headers, rows))
    verdict = "files arrived, no 'send a model first'" if fresh_ok else "FAILED: a reply said there was no model"
    print(
        "fresh bot (started 1 s before), /convert 0.2 s after the upload: "
        f"{fresh_seconds:.1f} s to the report; {verdict}"
    )


if __name__ == "__main__":
    main()
