"""`convbot doctor`: can this installation run the bot? One line per check, `ok`, `warn`, `FAIL` or
`skip`, then a detail (a `storage` line only when CONVBOT_STORAGE_URL is set). The exit status is 1
when a check FAILed, else 0 (a container HEALTHCHECK runs `convbot doctor --quick`).

The checks only look: the database is opened read-only (a missing SQLite file is reported, never
created), TensorFlow is imported in a child process (importing it takes seconds and memory this
process should not keep; `--quick` skips it), and the bot token is never printed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

if TYPE_CHECKING:
    from bot.settings import BotSettings

Status = Literal["ok", "warn", "FAIL", "skip"]

TF_IMPORT_TIMEOUT_SECONDS = 180.0
BOT_API_TIMEOUT_SECONDS = 10.0
DATABASE_TIMEOUT_SECONDS = 10
NODE_TIMEOUT_SECONDS = 10.0
MIN_NODE_MAJOR = 18  # node/package.json: "engines": {"node": ">=18"}
MIN_FREE_MB = 256.0  # below this a single upload or conversion may not fit

_TF_IMPORT = (
    "import tensorflow as tf, tensorflowjs as tfjs; "
    "print(f'TensorFlow {tf.__version__}, tensorflowjs {tfjs.__version__}')"
)


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<10}  {self.detail}"


def run_doctor(quick: bool) -> int:
    """Run every check, printing each line as it completes; 1 when one FAILed, else 0."""
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        print(check.line(), flush=True)

    settings, settings_check = check_settings()
    report(settings_check)
    report(check_database(settings) if settings else _skipped("database"))
    if settings is not None and settings.broker_url:
        report(check_broker(settings.broker_url))
    if quick:
        report(Check("skip", "tensorflow", "import not tried with --quick"))
    else:
        report(check_tensorflow())
    report(check_node())
    report(check_disk(settings) if settings else _skipped("disk"))
    if settings and settings.storage_url:
        report(check_storage(settings))
    report(check_bot_api(settings) if settings else _skipped("bot api"))
    return 1 if any(check.status == "FAIL" for check in checks) else 0


def check_settings() -> tuple[BotSettings | None, Check]:
    from bot.settings import PUBLIC_API_URL, BotSettings
    from jobs.settings import SettingsError, load_settings_as

    try:
        settings = load_settings_as(BotSettings)
    except SettingsError as error:
        return None, Check("FAIL", "settings", str(error))
    detail = f"data dir {settings.data_dir}, Bot API {settings.api_url}" + (" (local)" if settings.local_api else "")
    if settings.local_api and settings.api_url == PUBLIC_API_URL:
        return settings, Check("warn", "settings", f"{detail}: CONVBOT_LOCAL_API=1 wants your server's URL")
    return settings, Check("ok", "settings", detail)


def check_database(settings: BotSettings) -> Check:
    """Connect read-only and compare the database's revision with the newest migration."""
    from sqlalchemy import make_url
    from sqlalchemy.engine import URL

    from db import migrate

    url = settings.sqlalchemy_url
    parsed = make_url(url)
    shown = migrate.url_for_display(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return Check("warn", "database", f"{shown}: an in-memory database keeps nothing")
        if not database.startswith("file:"):
            path = Path(database).expanduser().resolve()
            if not path.exists():
                return Check("warn", "database", f"{shown}: not created yet: run convbot db upgrade")
            # Never create or change anything: mode=ro. With no -wal file beside it nobody has the database
            # open, and immutable=1 keeps SQLite from creating -wal and -shm files (owned by whoever runs
            # doctor, they could lock the bot out); while the bot runs they exist and are shared as usual.
            query = {"mode": "ro", "uri": "true"}
            if not path.with_name(path.name + "-wal").exists():
                query["immutable"] = "1"
            read_only = URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)
            url = read_only.render_as_string(hide_password=False)
    elif backend == "postgresql" and "connect_timeout" not in parsed.query:
        url = parsed.update_query_dict({"connect_timeout": str(DATABASE_TIMEOUT_SECONDS)}).render_as_string(
            hide_password=False
        )
    try:
        current = migrate.current_revision(url)
        head = migrate.head_revision()
    except Exception as error:
        return Check("FAIL", "database", f"{shown}: cannot read it: {_database_error(error, parsed.password)}")
    if current is None:
        return Check("FAIL", "database", f"{shown}: not migrated: run convbot db upgrade")
    if current == head:
        return Check("ok", "database", f"{shown}: at revision {current} (the newest)")
    if not _known_revision(current):
        return Check("FAIL", "database", f"{shown}: at revision {current}, unknown to this convbot (newest {head})")
    return Check("FAIL", "database", f"{shown}: at revision {current}, newest is {head}: run convbot db upgrade")


def check_broker(url: str) -> Check:
    """Reach the Celery broker (CONVBOT_BROKER_URL) and count the conversion worker processes it has heard of."""
    from jobs.celery_app import SLOT_PATTERN, check_broker, safe_url
    from jobs.settings import SettingsError

    try:
        client = check_broker(url)
    except SettingsError as error:
        return Check("FAIL", "broker", str(error))
    with client:
        alive = sum(1 for _ in client.scan_iter(match=SLOT_PATTERN, count=1000))
    if not alive:
        return Check("warn", "broker", f"{safe_url(url)}: no conversion worker is running: start `convbot worker`")
    return Check("ok", "broker", f"{safe_url(url)}: {alive} conversion worker process(es)")


def check_tensorflow() -> Check:
    """Import TensorFlow and tensorflowjs in a child process, as the conversion workers do."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFDF_DISABLE_WELCOME_MESSAGE": "1"}
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", _TF_IMPORT],
            capture_output=True,
            text=True,
            timeout=TF_IMPORT_TIMEOUT_SECONDS,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check("FAIL", "tensorflow", f"import did not finish in {TF_IMPORT_TIMEOUT_SECONDS:.0f} s")
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        return Check("FAIL", "tensorflow", f"import failed: {_last_line(result.stderr) or f'exit {result.returncode}'}")
    return Check("ok", "tensorflow", f"{_last_line(result.stdout)} (imported in {elapsed:.1f} s)")


def check_node() -> Check:
    """Node.js and @tensorflow/tfjs, which run converted TF.js models to verify them."""
    from converter.tfjs_runtime import TFJS_PACKAGE, node_executable

    node = node_executable()
    if node is None:
        return Check("warn", "node", "Node.js not found: TF.js models will not be run to verify them")
    try:
        result = subprocess.run(
            [node, "--version"],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check("FAIL", "node", f"{node} did not run: {error}")
    version = result.stdout.strip()
    if result.returncode != 0 or not version.startswith("v"):
        return Check("FAIL", "node", f"{node} --version failed: {_last_line(result.stderr) or result.returncode}")
    major = version[1:].split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        return Check("warn", "node", f"Node.js {version} at {node}: @tensorflow/tfjs needs {MIN_NODE_MAJOR} or newer")
    try:
        tfjs_version = json.loads(TFJS_PACKAGE.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return Check("warn", "node", f"Node.js {version}, but @tensorflow/tfjs is not installed in node/: npm ci")
    return Check("ok", "node", f"Node.js {version} ({node}), @tensorflow/tfjs {tfjs_version}")


def check_disk(settings: BotSettings) -> Check:
    """Free space where the data dir is, against CONVBOT_MAX_DISK_MB (what cleanup lets it grow to)."""
    data_dir = settings.data_dir
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free_mb = shutil.disk_usage(existing).free / 1024 / 1024
    except OSError as error:
        return Check("FAIL", "disk", f"cannot read the free space of {existing}: {error}")
    if not data_dir.exists():
        where = f"{data_dir} (not created yet)"
        used_mb = 0.0
        writable = os.access(existing, os.W_OK)
    else:
        where = str(data_dir)
        used_mb = _tree_size(data_dir) / 1024 / 1024
        writable = os.access(data_dir, os.W_OK | os.X_OK)
    if not writable:
        return Check("FAIL", "disk", f"{where}: not writable by this user")
    limit = settings.max_disk_mb
    detail = f"{where}: {_mb(free_mb)} free, convbot uses {_mb(used_mb)} of CONVBOT_MAX_DISK_MB {_mb(limit)}"
    if free_mb < MIN_FREE_MB:
        return Check("FAIL", "disk", f"{detail}: the disk is almost full")
    if free_mb + used_mb < limit:
        return Check("warn", "disk", f"{detail}: the disk fills before cleanup's limit")
    return Check("ok", "disk", detail)


def check_storage(settings: BotSettings) -> Check:
    """The bucket CONVBOT_STORAGE_URL names can be listed with boto3's credentials (nothing is written)."""
    from jobs.storage import StorageError, storage_from_settings

    try:
        storage = storage_from_settings(settings)
        storage.check()
    except StorageError as error:
        return Check("FAIL", "storage", str(error))
    return Check("ok", "storage", f"{storage.location} via {settings.s3_endpoint_url or 'AWS S3'}")


def check_bot_api(settings: BotSettings) -> Check:
    """getMe on the Bot API server: the token is accepted and the server is reachable."""
    import httpx

    token = settings.token
    if not token:
        return Check("warn", "bot api", "no CONVBOT_TOKEN (console mode)")
    where = settings.api_url

    def redact(text: str) -> str:
        return _redact(text, token)

    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the URL, token included
    try:
        response = httpx.get(f"{where}/bot{token}/getMe", timeout=BOT_API_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        return Check("FAIL", "bot api", redact(f"{where}: {type(error).__name__}: {error}"))
    try:
        answer: Any = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return Check("FAIL", "bot api", f"{where}: HTTP {response.status_code}, not a Bot API answer")
    if response.status_code == 401 or answer.get("error_code") == 401:
        return Check("FAIL", "bot api", f"{where}: the token was refused (401 Unauthorized): check CONVBOT_TOKEN")
    result = answer.get("result")
    if not answer.get("ok") or not isinstance(result, dict):
        description = redact(str(answer.get("description") or "no description"))
        return Check("FAIL", "bot api", f"{where}: HTTP {response.status_code}: {description}")
    return Check("ok", "bot api", redact(f"@{result.get('username')} (id {result.get('id')}) via {where}"))


def _skipped(name: str) -> Check:
    return Check("skip", name, "needs valid settings")


def _redact(text: str, token: str) -> str:
    """`text` without the token or its secret part, plain or URL-encoded."""
    secret = token.split(":", 1)[-1]
    for value in sorted({token, quote(token, safe=""), secret, quote(secret, safe="")}, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "<token>")
    return text


def _database_error(error: Exception, password: str | None) -> str:
    original = getattr(error, "orig", None)  # SQLAlchemy wraps the driver's error
    text = _first_line(str(original if original is not None else error)) or type(error).__name__
    return text.replace(password, "***") if password else text


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from db import migrate

    try:
        return ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_revision(revision) is not None
    except CommandError:
        return False


def _tree_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder, onerror=_ignore):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while walking
    return total


def _ignore(_error: OSError) -> None:
    """os.walk's onerror: a folder that vanished or cannot be listed counts as empty."""


def _mb(value: float) -> str:
    if value >= 1024:
        return f"{value / 1024:.1f} GB"
    return f"{value:.0f} MB" if value >= 10 or value == 0 else f"{value:.1f} MB"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
