"""The real bot (`convbot run`, its own process) against the fake Bot API on 127.0.0.1, driven
from a test or a bench as a chat user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.fake_api import BotAction, FakeBotApi, FakeUser

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:TEST-token"


class FakeApiThread:
    """A FakeBotApi on its own event loop in a background thread, with blocking helpers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api = FakeBotApi(token=TOKEN)
        self.call(self.api.start())

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def do(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a (non-async) FakeBotApi method on its loop's thread."""

        async def run() -> Any:
            return function(*args, **kwargs)

        return self.call(run())

    def mark(self) -> int:
        return int(self.do(lambda: len(self.api.sent)))

    def wait_for(
        self,
        predicate: Callable[[BotAction], bool] | None = None,
        *,
        timeout: float = 60,
        since: int = 0,
        **filters: Any,
    ) -> BotAction:
        action: BotAction = self.call(
            self.api.wait_for(predicate, timeout=timeout, since=since, **filters), timeout=timeout + 5
        )
        return action

    def wait_for_text(self, chat_id: int, fragment: str, *, since: int = 0, timeout: float = 60) -> BotAction:
        return self.wait_for(
            lambda a: a.chat_id == chat_id and fragment in (a.text or ""), since=since, timeout=timeout
        )

    def close(self) -> None:
        self.call(self.api.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class BotProcess:
    """`convbot run` in a child process, configured through its environment as an operator would."""

    def __init__(
        self, api_url: str, data_dir: Path, log_path: Path, env_extra: dict[str, str] | None = None, **settings: str
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVBOT_")}
        env.update(
            {
                "CONVBOT_TOKEN": TOKEN,
                "CONVBOT_API_URL": api_url,
                "CONVBOT_DATA_DIR": str(data_dir),
                "CONVBOT_WORKERS": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "PTB_TIMEDELTA": "true",
            }
        )
        env.update({f"CONVBOT_{k.upper()}": v for k, v in settings.items()})
        env.update(env_extra or {})  # variables by their full name (the storage's AWS_* credentials)
        self.log_path = log_path
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "run"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def maps(self) -> str:
        """The shared libraries mapped into the bot's own process."""
        return Path(f"/proc/{self.process.pid}/maps").read_text()

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def user(user_id: int, language: str = "en") -> FakeUser:
    return FakeUser(user_id, f"User{user_id}", language_code=language)


def buttons(action: BotAction) -> dict[str, str]:
    """Button text -> callback data of a message's inline keyboard."""
    keyboard = (action.reply_markup or {}).get("inline_keyboard", [])
    return {button["text"]: button["callback_data"] for row in keyboard for button in row if "callback_data" in button}
