"""A private Redis server for the tests that need a broker (registered in tests/conftest.py).

    redis_url   session-wide: redis://127.0.0.1:<free port>/0 of a `redis-server` started here, without
                persistence, stopped at the end of the session (bench/servers.py, which the benches share)

Debian's `redis-server` is installed by scripts/test.sh when it is missing; no system service is used.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.servers import RedisServer, ServerError


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        server = RedisServer.start()
    except ServerError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()
