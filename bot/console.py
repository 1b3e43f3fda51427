"""Console mode: the real bot, against the embedded fake Bot API, with a chat in the terminal.

For a newcomer without a bot token: typed lines are messages and commands, `/upload PATH` sends a
file, buttons are shown numbered and pressed by typing the number, files the bot sends are saved
under CONVBOT_DATA_DIR/console/. Database, workers, cleanup and verification are the same code as
with Telegram.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from bot.app import build_application
from bot.fake_api import BotAction, FakeBotApi, FakeUser
from bot.settings import BotSettings

CONSOLE_TOKEN = "1000001:console-mode"
CONSOLE_USER_ID = 1
PROMPT = "you> "
BANNER = (
    "convbot console: a chat with the bot in this terminal. Send a model with /upload PATH, e.g.\n"
    "  /upload tests/data/fer_emotion_model.hdf5\n"
    "with a caption, as in Telegram, to convert it at once:\n"
    "  /upload tests/data/fer_emotion_model.hdf5 /convert tflite quant=float16\n"
    "then press buttons by typing their number, or use /convert, /nodes, /jobs, /help. Ctrl-D or /quit leaves.\n"
    "To use Telegram instead, set CONVBOT_TOKEN to a token from @BotFather."
)


class ConsoleChat:
    """Shows what the bot does and turns typed lines into the user's messages."""

    def __init__(self, api: FakeBotApi, user: FakeUser, save_dir: Path, out: TextIO) -> None:
        self.api, self.user, self.save_dir, self.out = api, user, save_dir, out
        self.buttons: list[tuple[int, str]] = []  # number - 1 -> (message id, callback data)
        self.last_message_id: int | None = None
        self.last_lines = 0  # how many lines the last shown message took, to redraw it in place
        self.ansi = out.isatty()  # redraw in place only on a terminal; plain lines into a pipe or file

    def on_action(self, action: BotAction) -> None:
        """Called by the fake API for each thing the bot does in the chat."""
        if action.chat_id != self.user.id:
            return
        if action.method == "sendMessage":
            self._show(action.message_id, action.text or "", action.reply_markup)
        elif action.method in ("editMessageText", "editMessageReplyMarkup"):
            message = self.api.message(self.user.id, action.message_id or 0) or {}
            self._show(
                action.message_id, message.get("text", action.text or ""), message.get("reply_markup"), edited=True
            )
        elif action.method == "sendDocument" and action.document is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            path = (self.save_dir / Path(action.document.file_name).name).resolve()
            path.write_bytes(action.document.data)
            self._print(f"bot: {action.document.caption or ''}".rstrip())
            self._print(f"saved: {path}")
        elif action.method == "sendPhoto" and action.photo is not None:  # quant=compare's chart, say
            self.save_dir.mkdir(parents=True, exist_ok=True)
            path = (self.save_dir / f"photo-{action.message_id}.png").resolve()
            path.write_bytes(action.photo.data)
            self._print(f"bot: {action.photo.caption or ''}".rstrip())
            self._print(f"saved: {path}")
        elif action.method == "answerCallbackQuery" and action.text:
            self._print(f"bot: {action.text}")

    def _show(self, message_id: int | None, text: str, markup: dict[str, Any] | None, edited: bool = False) -> None:
        lines = [
            f"bot: {line}" if index == 0 else f"     {line}" for index, line in enumerate(text.splitlines() or [""])
        ]
        keyboard = (markup or {}).get("inline_keyboard", [])
        if keyboard:
            self.buttons = []
            for row in keyboard:
                labels = []
                for button in row:
                    if "callback_data" in button:
                        self.buttons.append((message_id or 0, button["callback_data"]))
                        labels.append(f"[{len(self.buttons)}] {button['text']}")
                lines.append("     " + "  ".join(labels))
        if edited and message_id == self.last_message_id and self.last_lines and self.ansi:
            # The status message is the last thing on screen: redraw it where it is.
            self.out.write(f"\r\x1b[{self.last_lines}A\x1b[J")
        self._print("\n".join(lines))
        self.last_message_id, self.last_lines = message_id, len(lines)

    def _print(self, text: str) -> None:
        clear = "\r\x1b[K" if self.ansi else "\n"
        self.out.write(f"{clear}{text}\n{PROMPT}")
        self.out.flush()
        self.last_lines = 0

    def handle_line(self, line: str) -> bool:
        """Act on one typed line; False to leave."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        self.last_message_id, self.last_lines = None, 0
        if line.startswith("/upload"):
            # "/upload PATH /convert ..." : what follows the path is the document's caption.
            path_text, slash, caption = line.removeprefix("/upload").strip().partition(" /")
            path = Path(os.path.expanduser(path_text.strip().strip("'\"")))
            if not path.is_file():
                self._print(f"no such file: {path}")
                return True
            self.api.user_sends_document(self.user, path.read_bytes(), path.name, caption=slash.strip() + caption)
        elif line.isdigit() and self.buttons:
            number = int(line)
            if not 1 <= number <= len(self.buttons):
                self._print(f"press a button from 1 to {len(self.buttons)}")
                return True
            message_id, data = self.buttons[number - 1]
            try:
                self.api.user_presses_button(self.user, message_id, data)
            except ValueError:
                self._print("that menu is gone; send /convert or the model again")
        else:
            self.api.user_sends_text(self.user, line)
        return True


async def _read_lines(chat: ConsoleChat, stream: TextIO) -> None:
    loop = asyncio.get_running_loop()
    chat.out.write(PROMPT)
    chat.out.flush()
    while True:
        line = await loop.run_in_executor(None, stream.readline)
        if not line or not chat.handle_line(line):
            return


async def run_console(settings: BotSettings, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """Run the bot against an embedded Bot API server and chat with it in the terminal."""
    log_file = settings.data_dir / "logs" / "console.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=log_file, format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    language = "zh" if os.environ.get("LANG", "").lower().startswith("zh") else "en"
    user = FakeUser(CONSOLE_USER_ID, _user_name(), language_code=language)
    async with FakeBotApi(token=CONSOLE_TOKEN) as api:
        console_settings = settings.model_copy(
            update={"token": CONSOLE_TOKEN, "api_url": api.root_url, "admins": str(CONSOLE_USER_ID), "local_api": False}
        )
        application = build_application(console_settings)
        chat = ConsoleChat(api, user, settings.data_dir / "console", stdout)
        api.add_listener(chat.on_action)
        stdout.write(BANNER + "\nstarting (the converter loads TensorFlow in the background)…\n")
        # post_init runs only under run_polling; here the loop is ours, so call it ourselves.
        await application.initialize()
        assert application.post_init is not None and application.updater is not None
        await application.post_init(application)
        await application.updater.start_polling(poll_interval=0, timeout=1)
        await application.start()
        try:
            await _read_lines(chat, stdin)
        finally:
            await application.updater.stop()
            await application.stop()
            if application.post_shutdown is not None:
                await application.post_shutdown(application)
            await application.shutdown()
        stdout.write("\nbye\n")


def _user_name() -> str:
    try:
        return getpass.getuser() or "you"
    except (KeyError, OSError):
        return "you"
