"""A bot or a conversion worker set to use a storage or a broker it cannot use stops at once, with one line
naming the setting at fault: real processes against a real SeaweedFS and Redis on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.storage_fixtures import SeaweedS3, s3_variables

ROOT = Path(__file__).resolve().parents[1]


def _start(command: str, tmp_path: Path, variables: dict[str, str]) -> tuple[int, str, float]:
    """Run `convbot <command>` as an operator would; its exit code, its stderr and how long it took."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("CONVBOT_", "AWS_"))}
    env.update({"CONVBOT_DATA_DIR": str(tmp_path / "data"), "CONVBOT_TOKEN": "", **variables})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode, done.stderr.strip(), time.monotonic() - started


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_bucket_that_does_not_exist_stops_the_bot_and_the_worker_in_one_line(
    command: str, seaweedfs_server: SeaweedS3, redis_url: str, tmp_path: Path
) -> None:
    variables = s3_variables(seaweedfs_server, "startup")
    variables["CONVBOT_STORAGE_URL"] = "s3://no-such-bucket/convbot"
    variables["CONVBOT_BROKER_URL"] = redis_url
    code, stderr, seconds = _start(command, tmp_path, variables)
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1 and "CONVBOT_STORAGE_URL: bucket 'no-such-bucket' does not exist" in stderr
    assert seconds < 60


@pytest.mark.parametrize("command", ["run", "worker"])
def test_wrong_storage_credentials_stop_the_bot_and_the_worker_in_one_line(
    command: str, seaweedfs_server: SeaweedS3, redis_url: str, tmp_path: Path
) -> None:
    variables = s3_variables(seaweedfs_server, "startup")
    variables["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    variables["CONVBOT_BROKER_URL"] = redis_url
    code, stderr, _ = _start(command, tmp_path, variables)
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1 and "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in stderr
    assert "not-the-secret" not in stderr


def test_an_unreachable_broker_stops_the_bot_in_one_line(tmp_path: Path) -> None:
    code, stderr, seconds = _start("run", tmp_path, {"CONVBOT_BROKER_URL": "redis://:hidden@127.0.0.1:1/0"})
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1 and "CONVBOT_BROKER_URL: cannot reach the broker" in stderr
    assert "hidden" not in stderr and seconds < 60
