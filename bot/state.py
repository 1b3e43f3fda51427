"""What the bot remembers between messages of one chat: the choices being made for the current
model, and the menus on screen. Telegram's callback data holds at most 64 bytes, far less than a
node name, so buttons carry short keys and everything else lives here."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from converter.formats import Quantization
from converter.options import QUANT_SEARCHES, split_quantization

MENU_TTL_SECONDS = 6 * 3600
MAX_MENUS = 10_000


@dataclass
class Draft:
    """A conversion being set up for the chat's current model."""

    model_id: int
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    targets: str = "all"  # tflite | tfjs | pb | savedmodel | all
    quant: str = "none"
    shapes: dict[str, list[int]] = field(default_factory=dict)
    awaiting_shape: str | None = None  # the input whose dimensions the user is asked for
    # int8: the next document is the calibration set; once stored, its key serves the next conversion only.
    awaiting_samples: bool = False
    samples: str | None = None
    samples_need_range: bool = False  # images for a float input: the user says how pixels map
    input_range: str | None = None  # a key of converter.options.INPUT_RANGES
    search: str = ""  # what the user typed to filter the open node picker
    picker_key: str | None = None  # the open node picker, if any

    @property
    def quant_search(self) -> str:
        """auto or compare: every variant converted (converter/quant_search.py); "" for one quantization."""
        return self.quant if self.quant in QUANT_SEARCHES else ""

    def quantizations(self) -> tuple[Quantization, Quantization, list[str]]:
        """(TFLite's, TF.js's, warnings) as split_quantization gives them; a search asks for none of its own."""
        return split_quantization("none" if self.quant_search else self.quant)


@dataclass
class Menu:
    """One keyboard on screen: what it shows and for whom."""

    chat_id: int
    kind: str  # summary | picker | nodes
    data: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)


class ChatState:
    """Drafts per chat and menus by key. In memory: a restart expires the menus, politely."""

    def __init__(self) -> None:
        self.drafts: dict[int, Draft] = {}
        self.menus: dict[str, Menu] = {}

    def open_menu(self, chat_id: int, kind: str, **data: Any) -> str:
        """A new short key (8 characters) for a menu."""
        self._forget_old()
        key = secrets.token_urlsafe(6)
        self.menus[key] = Menu(chat_id, kind, dict(data))
        return key

    def menu(self, key: str, chat_id: int) -> Menu | None:
        """The menu behind a button, or None when it expired or belongs to another chat."""
        menu = self.menus.get(key)
        if menu is None or menu.chat_id != chat_id or time.monotonic() - menu.created > MENU_TTL_SECONDS:
            return None
        return menu

    def _forget_old(self) -> None:
        if len(self.menus) < MAX_MENUS:
            return
        oldest = sorted(self.menus, key=lambda key: self.menus[key].created)[: MAX_MENUS // 2]
        for key in oldest:
            del self.menus[key]
