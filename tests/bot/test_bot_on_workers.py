"""The bot with its conversions on other machines, end to end: the real `convbot run` with CONVBOT_BROKER_URL and
CONVBOT_STORAGE_URL set, two real `convbot worker` processes (each its own process group and data folder), a
private Redis and SeaweedFS's S3 on 127.0.0.1, and the fake Bot API standing in for Telegram and its users.

The bot, the workers and the tests share nothing but the broker and the S3 storage. The workers start once for
the module; tests run in file order (a test that kills a worker starts it again)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from bot.fake_api.driver import BotProcess, FakeApiThread, user
from tests.bot.test_bot_int8 import ASKED, _samples_npz
from tests.conversion_workers import Worker, process_alive, two_machines, wait_until
from tests.converter.conftest import random_input, run_frozen_graph, run_tflite
from tests.storage_fixtures import SeaweedS3, s3_variables

WARM = 240  # a worker imports TensorFlow before it takes a job: 20-40 s on a busy 2-core machine
PREFIX = "bot-on-workers"


@pytest.fixture(scope="module")
def storage(seaweedfs_server: SeaweedS3) -> dict[str, str]:
    return s3_variables(seaweedfs_server, PREFIX)


@pytest.fixture(scope="module")
def workers(
    redis_url: str, storage: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Worker]]:
    with two_machines(tmp_path_factory.mktemp("machines"), redis_url, storage) as started:
        yield started


class Deployment:
    """A bot on the broker and the storage, with its own data folder (its database, its temp files)."""

    def __init__(self, root: Path, redis_url: str, storage: dict[str, str]) -> None:
        self.root, self.redis_url, self.storage = root, redis_url, storage
        self.fake = FakeApiThread()
        self.bots: list[BotProcess] = []

    def start_bot(self) -> BotProcess:
        since = self.fake.mark()
        bot = BotProcess(
            self.fake.api.root_url,
            self.root / "bot-data",
            self.root / f"bot{len(self.bots)}.log",
            env_extra=self.storage,
            broker_url=self.redis_url,
            job_timeout_seconds="180",
        )
        self.bots.append(bot)
        self.fake.wait_for(method="setMyCommands", since=since, timeout=120)
        return bot

    def converting_pid(self) -> int | None:
        """The worker process converting a job now, from the workers' heartbeats in the broker."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            for key in client.scan_iter("convbot:slot:*"):
                raw = client.get(key)
                slot = json.loads(raw) if raw else {}
                if slot.get("run"):
                    return int(slot["pid"])
        finally:
            client.close()
        return None

    def close(self) -> None:
        for bot in self.bots:
            bot.stop()
        self.fake.close()
        for bot in self.bots:
            print(bot.log_path.read_text()[-3000:])


@pytest.fixture
def deployment(tmp_path: Path, redis_url: str, storage: dict[str, str]) -> Iterator[Deployment]:
    made = Deployment(tmp_path, redis_url, storage)
    try:
        yield made
    finally:
        made.close()


def _convert(deployment: Deployment, who: Any, model: Path, name: str) -> int:
    """Send the model with the caption `/convert tflite`; the mark to wait from."""
    since = deployment.fake.mark()
    deployment.fake.do(
        deployment.fake.api.user_sends_document, who, model.read_bytes(), name, caption="/convert tflite"
    )
    return since


def _document(deployment: Deployment, chat_id: int, since: int, timeout: float = WARM) -> Any:
    fake = deployment.fake
    return fake.wait_for(lambda a: a.method == "sendDocument" and a.chat_id == chat_id, since=since, timeout=timeout)


def _documents(deployment: Deployment, chat_id: int) -> list[str]:
    return [d.file_name for d in deployment.fake.do(deployment.fake.api.documents_sent, chat_id)]


def test_a_model_converts_on_a_worker_and_the_file_sent_computes_like_the_source(
    workers: list[Worker], deployment: Deployment, multihead_graph: Any
) -> None:
    deployment.start_bot()
    since = _convert(deployment, user(1), multihead_graph.path, "pose.pb")
    _document(deployment, 1, since)
    [sent] = deployment.fake.do(deployment.fake.api.documents_sent, 1)
    assert sent.file_name == "pose.tflite" and "passed" in sent.caption

    received = deployment.root / "pose.tflite"
    received.write_bytes(sent.data)
    image = random_input((1, 33, 33, 3))
    expected = run_frozen_graph(multihead_graph.path, {"image": image}, ["heatmap"])["heatmap"]
    np.testing.assert_allclose(run_tflite(received, {"image": image})["heatmap"], expected, atol=1e-5)
    # Nothing went through a disk the bot and the workers share: the files are in the S3 storage only.
    assert not any((worker.folder / "data" / "models").exists() for worker in workers)
    assert not (deployment.root / "bot-data" / "models").exists()


def test_int8_samples_reach_the_worker_through_the_storage(
    workers: list[Worker], deployment: Deployment, keras_v3: Any
) -> None:
    deployment.start_bot()
    fake, ada = deployment.fake, user(2)
    since = fake.mark()
    model = keras_v3.path.read_bytes()
    fake.do(fake.api.user_sends_document, ada, model, "classifier.keras", caption="/convert tflite quant=int8")
    fake.wait_for_text(2, ASKED, since=since, timeout=120)
    fake.do(fake.api.user_sends_document, ada, _samples_npz(25), "samples.npz")
    sent = _document(deployment, 2, since)
    assert sent.document.file_name == "classifier.tflite" and "weights int8" in (sent.text or "")
    assert "passed" in (sent.text or "")
    assert not (deployment.root / "bot-data" / "calibration").exists()  # the worker read them from S3


def test_cancel_stops_the_job_on_its_worker(
    workers: list[Worker], deployment: Deployment, multihead_graph: Any
) -> None:
    deployment.start_bot()
    since = _convert(deployment, user(2), multihead_graph.path, "slow_pose.pb")  # the workers sleep 10 s on slow_*
    fake = deployment.fake
    fake.wait_for(lambda a: a.chat_id == 2 and "loading" in (a.text or ""), since=since, timeout=WARM)
    pid = wait_until(deployment.converting_pid, 30, "a worker converting the job")
    fake.do(fake.api.user_sends_text, user(2), "/cancel")
    fake.wait_for_text(2, "cancelled", since=since)
    holder = next(worker for worker in workers if worker.holds(pid))
    wait_until(lambda: not process_alive(pid), 5, "the converting process to be killed")
    time.sleep(12)  # past the slow model's 10 s sleep: a job left running would have sent its file by now
    assert _documents(deployment, 2) == []
    assert holder.process is not None and holder.process.poll() is None  # the worker itself lives on


def test_a_worker_machine_lost_mid_job_the_other_one_delivers_the_file_once(
    workers: list[Worker], deployment: Deployment, multihead_graph: Any
) -> None:
    deployment.start_bot()
    since = _convert(deployment, user(3), multihead_graph.path, "slow_lost.pb")
    pid = wait_until(deployment.converting_pid, WARM, "a worker converting the job")
    [lost] = [worker for worker in workers if worker.holds(pid)]
    lost.kill_group()  # during the slow model's 10 s sleep: the machine and its processes are gone
    deployment.fake.wait_for_text(3, "stopped answering", since=since, timeout=30)
    _document(deployment, 3, since)
    time.sleep(2)
    assert _documents(deployment, 3) == ["slow_lost.tflite"]  # once
    lost.start()  # for the next tests


def test_a_bot_restarted_mid_job_tells_its_user_and_delivers_the_file(
    workers: list[Worker], deployment: Deployment, multihead_graph: Any
) -> None:
    first = deployment.start_bot()
    since = _convert(deployment, user(4), multihead_graph.path, "slow_restart.pb")
    wait_until(deployment.converting_pid, WARM, "a worker converting the job")
    first.stop(kill=True)  # SIGKILL: no shutdown code runs; the worker goes on with the old run
    deployment.start_bot()
    deployment.fake.wait_for_text(4, "interrupted by a restart", since=since, timeout=30)
    _document(deployment, 4, since)
    time.sleep(12)  # the old run ends too, on a list nobody reads: it must not send a second file
    assert _documents(deployment, 4) == ["slow_restart.tflite"]


def test_with_no_worker_alive_the_user_is_told_and_the_job_runs_when_one_joins(
    workers: list[Worker], deployment: Deployment, multihead_graph: Any
) -> None:
    for worker in workers:
        worker.kill_group()
    deployment.start_bot()
    since = _convert(deployment, user(5), multihead_graph.path, "alone.pb")
    deployment.fake.wait_for_text(5, "waits for a converter", since=since, timeout=30)
    workers[0].start()
    _document(deployment, 5, since)
    assert _documents(deployment, 5) == ["alone.tflite"]
