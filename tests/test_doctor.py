"""`convbot doctor`: one line per check against a real database and the fake Bot API server; the
token never appears in what it prints, and it never creates or migrates the database itself."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.fake_api import FakeBotApi
from cli import doctor
from cli.doctor import run_doctor
from tests.storage_fixtures import SeaweedS3

TOKEN = "4242:doctor-test-token-secret"


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeBotApi]:
    """The fake Bot API server, running on an event loop in a thread of its own (doctor is synchronous)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-bot-api", daemon=True)
    thread.start()

    async def start() -> FakeBotApi:
        api = FakeBotApi(token=TOKEN, bot_username="doctor_test_bot")
        await api.start()
        return api

    api = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings from the environment only: no CONVBOT_* from outside, no .env (the cwd is empty)."""
    import os

    for name in list(os.environ):
        if name.startswith("CONVBOT_"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    data = tmp_path / "data"
    monkeypatch.setenv("CONVBOT_DATA_DIR", str(data))
    monkeypatch.setenv("CONVBOT_MAX_DISK_MB", "1")  # any disk with space passes
    return data


@pytest.fixture
def migrated_sqlite(data_dir: Path) -> Path:
    from db.migrate import upgrade

    database = data_dir / "convbot.db"
    upgrade(f"sqlite:///{database}")
    return database


def use_api(monkeypatch: pytest.MonkeyPatch, api: FakeBotApi, token: str = TOKEN) -> None:
    monkeypatch.setenv("CONVBOT_API_URL", api.root_url)
    monkeypatch.setenv("CONVBOT_TOKEN", token)


def lines(output: str) -> dict[str, tuple[str, str]]:
    """Check name -> (status, detail), from doctor's output."""
    found: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        status, rest = line[:4].strip(), line[6:]
        name, detail = rest[:10].strip(), rest[12:]
        found[name] = (status, detail)
    return found


def test_quick_on_a_healthy_installation_passes(
    migrated_sqlite: Path, fake_api: FakeBotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_api(monkeypatch, fake_api)
    assert run_doctor(quick=True) == 0
    out = capsys.readouterr().out
    checks = lines(out)
    assert list(checks) == ["settings", "database", "tensorflow", "node", "disk", "bot api"]
    assert checks["settings"][0] == "ok"
    assert checks["database"][0] == "ok" and "the newest" in checks["database"][1]
    assert checks["tensorflow"][0] == "skip"
    assert checks["node"][0] in ("ok", "warn")  # warn only where Node.js or node_modules is missing
    assert checks["disk"][0] == "ok"
    assert checks["bot api"] == ("ok", f"@doctor_test_bot (id 4242) via {fake_api.root_url}")
    assert TOKEN not in out and "doctor-test-token-secret" not in out


def test_full_mode_imports_tensorflow_in_a_child_process(
    migrated_sqlite: Path, fake_api: FakeBotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    use_api(monkeypatch, fake_api)
    imported_before = "tensorflow" in sys.modules
    assert run_doctor(quick=False) == 0
    status, detail = lines(capsys.readouterr().out)["tensorflow"]
    assert status == "ok"
    assert detail.startswith("TensorFlow 2.") and ", tensorflowjs 4." in detail
    assert ("tensorflow" in sys.modules) == imported_before  # not imported here


def test_quick_mode_never_tries_the_tensorflow_import(
    migrated_sqlite: Path, fake_api: FakeBotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse() -> doctor.Check:
        raise AssertionError("--quick must not import TensorFlow")

    monkeypatch.setattr(doctor, "check_tensorflow", refuse)
    use_api(monkeypatch, fake_api)
    assert run_doctor(quick=True) == 0
    assert lines(capsys.readouterr().out)["tensorflow"] == ("skip", "import not tried with --quick")


def test_a_wrong_token_fails_without_printing_it(
    migrated_sqlite: Path, fake_api: FakeBotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "4242:wrong-secret-the-doctor-must-hide"
    use_api(monkeypatch, fake_api, token=wrong)
    assert run_doctor(quick=True) == 1
    out = capsys.readouterr().out
    status, detail = lines(out)["bot api"]
    assert status == "FAIL"
    assert "401" in detail and "CONVBOT_TOKEN" in detail
    assert "wrong-secret-the-doctor-must-hide" not in out


def test_an_unreachable_server_fails_without_printing_the_token(
    migrated_sqlite: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CONVBOT_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CONVBOT_TOKEN", TOKEN)
    assert run_doctor(quick=True) == 1
    out = capsys.readouterr().out
    status, detail = lines(out)["bot api"]
    assert status == "FAIL" and f"127.0.0.1:{port}" in detail
    assert "doctor-test-token-secret" not in out


def test_redaction_covers_the_encoded_and_bare_secret() -> None:
    text = f"GET /bot{TOKEN}/getMe and /bot4242%3Adoctor-test-token-secret/x and doctor-test-token-secret"
    assert "doctor-test-token-secret" not in doctor._redact(text, TOKEN)


def test_without_a_token_the_bot_api_is_a_warning(migrated_sqlite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_doctor(quick=True) == 0
    assert lines(capsys.readouterr().out)["bot api"] == ("warn", "no CONVBOT_TOKEN (console mode)")


def test_a_missing_sqlite_file_is_a_warning_and_is_not_created(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_doctor(quick=True) == 0
    status, detail = lines(capsys.readouterr().out)["database"]
    assert status == "warn"
    assert detail.endswith("not created yet: run convbot db upgrade")
    assert not data_dir.exists()  # neither the database nor its folder


def test_an_unmigrated_database_fails(
    empty_database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if empty_database_url.startswith("sqlite"):  # an existing file with no schema in it
        import sqlite3

        from sqlalchemy import make_url

        path = Path(make_url(empty_database_url).database or "")
        path.parent.mkdir(parents=True)
        sqlite3.connect(path).close()
    monkeypatch.setenv("CONVBOT_DATABASE_URL", empty_database_url)
    assert run_doctor(quick=True) == 1
    status, detail = lines(capsys.readouterr().out)["database"]
    assert (status, detail.split(": ", 1)[1]) == ("FAIL", "not migrated: run convbot db upgrade")

    from db.migrate import current_revision

    assert current_revision(empty_database_url) is None  # doctor did not migrate it


def test_a_migrated_database_on_each_backend_passes(
    database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVBOT_DATABASE_URL", database_url)
    assert run_doctor(quick=True) == 0
    status, detail = lines(capsys.readouterr().out)["database"]
    assert status == "ok" and detail.endswith("(the newest)")


def test_a_database_at_an_old_revision_fails(migrated_sqlite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    with sqlite3.connect(migrated_sqlite) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    connection.close()
    assert run_doctor(quick=True) == 1
    status, detail = lines(capsys.readouterr().out)["database"]
    assert status == "FAIL" and "feedfacecafe" in detail and "unknown to this convbot" in detail


def test_an_unreachable_database_fails_without_printing_its_password(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CONVBOT_DATABASE_URL", f"postgresql://convbot:pa55-word-x@127.0.0.1:{port}/convbot")
    assert run_doctor(quick=True) == 1
    out = capsys.readouterr().out
    status, detail = lines(out)["database"]
    assert status == "FAIL" and "cannot read it" in detail
    assert "pa55-word-x" not in out


def test_bad_settings_fail_and_skip_what_needs_them(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVBOT_WORKERS", "0")
    assert run_doctor(quick=True) == 1
    checks = lines(capsys.readouterr().out)
    assert checks["settings"][0] == "FAIL" and "CONVBOT_WORKERS" in checks["settings"][1]
    assert checks["database"][0] == checks["disk"][0] == checks["bot api"][0] == "skip"


def test_no_node_is_a_warning(
    migrated_sqlite: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVBOT_NODE", "no-such-node-binary")
    assert run_doctor(quick=True) == 0
    status, detail = lines(capsys.readouterr().out)["node"]
    assert status == "warn" and "Node.js not found" in detail


def test_a_disk_smaller_than_the_cleanup_limit_is_a_warning(
    migrated_sqlite: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVBOT_MAX_DISK_MB", str(1024.0**4))  # an exabyte
    assert run_doctor(quick=True) == 0
    status, detail = lines(capsys.readouterr().out)["disk"]
    assert status == "warn" and "CONVBOT_MAX_DISK_MB" in detail


def test_the_command_line_runs_it(
    migrated_sqlite: Path, fake_api: FakeBotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    use_api(monkeypatch, fake_api)
    assert main(["doctor", "--quick"]) == 0
    assert lines(capsys.readouterr().out)["bot api"][0] == "ok"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("healthy", ("ok", "s3://convbot-test/doctor via http://127.0.0.1:")),
        (
            "no such bucket",
            ("FAIL", "CONVBOT_STORAGE_URL: bucket 'no-such-bucket' does not exist at http://127.0.0.1:"),
        ),
        ("wrong secret", ("FAIL", "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: refused by s3://convbot-test/doctor")),
    ],
)
def test_the_storage_is_checked_when_it_is_set(
    migrated_sqlite: Path,
    s3_environment: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    expected: tuple[str, str],
) -> None:
    bucket = "no-such-bucket" if case == "no such bucket" else s3_environment.bucket
    monkeypatch.setenv("CONVBOT_STORAGE_URL", f"s3://{bucket}/doctor")
    monkeypatch.setenv("CONVBOT_S3_ENDPOINT_URL", s3_environment.endpoint_url)
    if case == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-the-doctor-must-hide")
    assert run_doctor(quick=True) == (0 if case == "healthy" else 1)
    out = capsys.readouterr().out
    checks = lines(out)
    assert list(checks) == ["settings", "database", "tensorflow", "node", "disk", "storage", "bot api"]
    status, detail = checks["storage"]
    assert (status, detail[: len(expected[1])]) == expected
    assert "wrong-secret-the-doctor-must-hide" not in out and s3_environment.secret_key not in out


def test_the_broker_is_checked_when_it_is_set(
    migrated_sqlite: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVBOT_BROKER_URL", redis_url)
    run_doctor(quick=True)
    assert lines(capsys.readouterr().out)["broker"] == (
        "warn",
        f"{redis_url}: no conversion worker is running: start `convbot worker`",
    )
    monkeypatch.setenv("CONVBOT_BROKER_URL", "redis://:secret@127.0.0.1:1/0")
    assert run_doctor(quick=True) == 1
    out = capsys.readouterr().out
    status, detail = lines(out)["broker"]
    assert status == "FAIL" and "CONVBOT_BROKER_URL: cannot reach the broker at redis://***@127.0.0.1:1/0" in detail
    assert "secret" not in out
