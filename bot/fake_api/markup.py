"""Telegram's text formatting: parse modes (HTML, MarkdownV2, Markdown) to plain text plus entities.

Offsets and lengths count UTF-16 code units, as Telegram's do; malformed markup raises the error
Telegram answers with (``can't parse entities: ...``), and text is trimmed as Telegram trims it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bot.fake_api.params import Params
from bot.fake_api.protocol import ApiError, JSONDict


class _MarkupError(Exception):
    """Text in a parse mode that Telegram would refuse; the message follows "can't parse entities: "."""


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8"))


class _TextBuilder:
    """Plain text being assembled by a parser, with its length in UTF-16 code units."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[JSONDict] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += _utf16_len(text)

    def entity(self, kind: str, offset: int, **extra: Any) -> None:
        if self.pos > offset:
            self.entities.append({"type": kind, "offset": offset, "length": self.pos - offset, **extra})

    def result(self) -> tuple[str, list[JSONDict]]:
        return "".join(self.parts), _sorted_entities(self.entities)


def _sorted_entities(entities: Iterable[JSONDict]) -> list[JSONDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")
_HTML_TAG_NAME_RE = re.compile(r"[a-zA-Z0-9-]*")
_HTML_ATTR_RE = re.compile(r"""([a-zA-Z_][-a-zA-Z0-9_:]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>`=]+)))?""")
_HTML_PLAIN_RE = re.compile(r"[^<&]+")


def _html_unescape_at(source: str, index: int) -> tuple[str, int]:
    """The character an HTML entity at ``source[index]`` stands for, and how many characters it takes."""
    match = _HTML_ENTITY_RE.match(source, index)
    if match:
        name = match.group(1)
        if name.startswith("#"):
            code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
            if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code), match.end() - index
        elif name.lower() in _HTML_NAMED_ENTITIES:
            return _HTML_NAMED_ENTITIES[name.lower()], match.end() - index
    return "&", 1


def _html_unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "&":
            char, used = _html_unescape_at(text, i)
            out.append(char)
            i += used
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass
class _OpenTag:
    name: str
    offset: int
    attrs: dict[str, str]


def parse_html(source: str) -> tuple[str, list[JSONDict]]:
    """Text and entities of a message in Telegram's HTML parse mode; raises ``_MarkupError``."""
    out = _TextBuilder()
    stack: list[_OpenTag] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "&":
            decoded, used = _html_unescape_at(source, i)
            out.add(decoded)
            i += used
            continue
        if char != "<":
            match = _HTML_PLAIN_RE.match(source, i)
            assert match is not None
            out.add(match.group())
            i = match.end()
            continue
        begin = i
        if source.startswith("</", i):
            end = source.find(">", i)
            if end < 0:
                raise _MarkupError(f"Unclosed end tag at byte offset {_byte_offset(source, begin)}")
            name = source[i + 2 : end].strip().lower()
            if not stack:
                raise _MarkupError(f"Unexpected end tag at byte offset {_byte_offset(source, begin)}")
            tag = stack.pop()
            if name != tag.name:
                raise _MarkupError(
                    f"Unmatched end tag at byte offset {_byte_offset(source, begin)}, "
                    f'expected "</{tag.name}>", found "</{name}>"'
                )
            _close_html_tag(out, tag, stack)
            i = end + 1
            continue
        name_match = _HTML_TAG_NAME_RE.match(source, i + 1)
        assert name_match is not None
        name = name_match.group().lower()
        if name not in _HTML_TAGS:
            raise _MarkupError(f'Unsupported start tag "{name}" at byte offset {_byte_offset(source, begin)}')
        i = name_match.end()
        attrs: dict[str, str] = {}
        while True:
            while i < n and source[i].isspace():
                i += 1
            if i >= n:
                raise _MarkupError(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
            if source[i] == ">":
                i += 1
                break
            attr = _HTML_ATTR_RE.match(source, i)
            if attr is None:
                raise _MarkupError(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}" '
                    f"at byte offset {_byte_offset(source, begin)}"
                )
            value = next((v for v in attr.groups()[1:] if v is not None), "")
            attrs[attr.group(1).lower()] = _html_unescape(value)
            i = attr.end()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _MarkupError(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(source, begin)}')
        stack.append(_OpenTag(name, out.pos, attrs))
    if stack:
        raise _MarkupError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return out.result()


def _close_html_tag(out: _TextBuilder, tag: _OpenTag, stack: list[_OpenTag]) -> None:
    kind = _HTML_TAGS[tag.name]
    if kind == "text_link":
        href = tag.attrs.get("href")
        if href:
            out.entity("text_link", tag.offset, url=href)
    elif kind == "custom_emoji":
        emoji_id = tag.attrs.get("emoji-id")
        if emoji_id:
            out.entity("custom_emoji", tag.offset, custom_emoji_id=emoji_id)
    elif kind == "code" and stack and stack[-1].name == "pre" and tag.attrs.get("class", "").startswith("language-"):
        # <pre><code class="language-x">…</code></pre> is one pre entity with a language.
        stack[-1].attrs["language"] = tag.attrs["class"].removeprefix("language-")
    elif kind == "pre" and tag.attrs.get("language"):
        out.entity("pre", tag.offset, language=tag.attrs["language"])
    elif kind == "blockquote" and "expandable" in tag.attrs:
        out.entity("expandable_blockquote", tag.offset)
    else:
        out.entity(kind, tag.offset)


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "code": "Code",
    "pre": "Pre",
}


@dataclass
class _OpenEntity:
    kind: str
    offset: int
    byte_offset: int
    language: str | None = None


def _reserved(char: str) -> _MarkupError:
    return _MarkupError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def parse_markdown_v2(source: str) -> tuple[str, list[JSONDict]]:
    """Text and entities of a message in Telegram's MarkdownV2 parse mode; raises ``_MarkupError``."""
    out = _TextBuilder()
    stack: list[_OpenEntity] = []
    quote_start: int | None = None
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        nxt = source[i + 1] if i + 1 < n else ""
        top = stack[-1] if stack else None
        if char == "\\" and nxt and 0 < ord(nxt) <= 126:
            out.add(nxt)
            i += 2
            continue
        if top is not None and top.kind in ("code", "pre"):
            if char == "`" and top.kind == "code":
                stack.pop()
                out.entity("code", top.offset)
                i += 1
            elif char == "`" and source.startswith("```", i):
                stack.pop()
                extra = {"language": top.language} if top.language else {}
                out.entity("pre", top.offset, **extra)
                i += 3
            else:
                out.add(char)
                i += 1
            continue
        if char == "\n" and quote_start is not None and nxt != ">":
            out.entity("blockquote", quote_start)
            quote_start = None
        if char not in _MDV2_RESERVED:
            out.add(char)
            i += 1
            continue
        if top is not None and _mdv2_closes(top.kind, source, i):
            stack.pop()
            if top.kind in ("text_link", "custom_emoji"):
                i = _mdv2_close_link(source, i + 1, out, top)
                continue
            out.entity(top.kind, top.offset)
            i += 2 if top.kind in ("underline", "spoiler") else 1
            continue
        begin = _byte_offset(source, i)
        if char == "_" and nxt == "_":
            stack.append(_OpenEntity("underline", out.pos, begin))
            i += 2
        elif char in "_*~":
            stack.append(_OpenEntity({"_": "italic", "*": "bold", "~": "strikethrough"}[char], out.pos, begin))
            i += 1
        elif char == "|" and nxt == "|":
            stack.append(_OpenEntity("spoiler", out.pos, begin))
            i += 2
        elif char == "[":
            stack.append(_OpenEntity("text_link", out.pos, begin))
            i += 1
        elif char == "!" and nxt == "[":
            stack.append(_OpenEntity("custom_emoji", out.pos, begin))
            i += 2
        elif char == "`" and source.startswith("```", i):
            i += 3
            line_end = source.find("\n", i)
            language = None
            if line_end >= 0 and line_end > i and not any(c.isspace() for c in source[i:line_end]):
                language = source[i:line_end]
                i = line_end + 1
            elif line_end == i:
                i += 1
            stack.append(_OpenEntity("pre", out.pos, begin, language))
        elif char == "`":
            stack.append(_OpenEntity("code", out.pos, begin))
            i += 1
        elif char == ">" and (i == 0 or source[i - 1] == "\n") and not stack:
            if quote_start is None:
                quote_start = out.pos
            i += 1
        else:
            raise _reserved(char)
    if stack:
        top = stack[-1]
        raise _MarkupError(f"Can't find end of {_MDV2_NAMES[top.kind]} entity at byte offset {top.byte_offset}")
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    return out.result()


def _mdv2_closes(kind: str, source: str, i: int) -> bool:
    char = source[i]
    nxt = source[i + 1] if i + 1 < len(source) else ""
    if kind == "bold":
        return char == "*"
    if kind == "italic":
        return char == "_" and nxt != "_"
    if kind == "underline":
        return char == "_" and nxt == "_"
    if kind == "strikethrough":
        return char == "~"
    if kind == "spoiler":
        return char == "|" and nxt == "|"
    return kind in ("text_link", "custom_emoji") and char == "]"


def _mdv2_close_link(source: str, i: int, out: _TextBuilder, entity: _OpenEntity) -> int:
    """Read the ``(url)`` after ``[text]``; return the index after it."""
    if not source.startswith("(", i):
        return i
    url: list[str] = []
    j = i + 1
    while j < len(source) and source[j] != ")":
        if source[j] == "\\" and j + 1 < len(source):
            j += 1
        url.append(source[j])
        j += 1
    if j >= len(source):
        raise _MarkupError(f"Can't find end of a URL at byte offset {_byte_offset(source, i + 1)}")
    target = "".join(url)
    if entity.kind == "custom_emoji":
        match = re.fullmatch(r"tg://emoji\?id=(\d+)", target)
        if match is None:
            raise _MarkupError(f"Custom emoji URL must have scheme tg at byte offset {_byte_offset(source, i + 1)}")
        out.entity("custom_emoji", entity.offset, custom_emoji_id=match.group(1))
    elif target:
        out.entity("text_link", entity.offset, url=target)
    return j + 1


def parse_markdown(source: str) -> tuple[str, list[JSONDict]]:
    """Text and entities of a message in the legacy Markdown parse mode; raises ``_MarkupError``."""
    out = _TextBuilder()
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "\\" and i + 1 < n and source[i + 1] in "_*`[":
            out.add(source[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        unclosed = _MarkupError(f"Can't find end of the entity starting at byte offset {_byte_offset(source, i)}")
        start = out.pos
        if char == "[":
            end = source.find("]", i + 1)
            if end < 0:
                raise unclosed
            out.add(source[i + 1 : end])
            i = end + 1
            if source.startswith("(", i):
                close = source.find(")", i + 1)
                if close < 0:
                    raise unclosed
                url = source[i + 1 : close]
                if url:
                    out.entity("text_link", start, url=url)
                i = close + 1
        elif source.startswith("```", i):
            end = source.find("```", i + 3)
            if end < 0:
                raise unclosed
            body = source[i + 3 : end]
            language = None
            first_line, newline, rest = body.partition("\n")
            if newline and first_line and not any(c.isspace() for c in first_line):
                language, body = first_line, rest
            out.add(body)
            out.entity("pre", start, **({"language": language} if language else {}))
            i = end + 3
        else:
            end = source.find(char, i + 1)
            if end < 0:
                raise unclosed
            out.add(source[i + 1 : end])
            out.entity({"*": "bold", "_": "italic", "`": "code"}[char], start)
            i = end + 1
    return out.result()


_PARSERS: dict[str, Callable[[str], tuple[str, list[JSONDict]]]] = {
    "html": parse_html,
    "markdownv2": parse_markdown_v2,
    "markdown": parse_markdown,
}


def _trim(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Strip surrounding whitespace as Telegram does, moving and clipping entities to match."""
    trimmed = text.strip()
    if trimmed == text or not entities:
        return trimmed, entities
    shift = _utf16_len(text[: len(text) - len(text.lstrip())])
    end = _utf16_len(trimmed)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        stop = min(entity["offset"] + entity["length"] - shift, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return trimmed, kept


_COMMAND_RE = re.compile(r"(?<![\w/])/[a-zA-Z0-9_]{1,64}(?:@[a-zA-Z0-9_]{3,32})?(?![\w/])")


def user_entities(text: str) -> list[JSONDict]:
    """Entities a Telegram client sends along with what a person types (bot commands)."""
    return [
        {"type": "bot_command", "offset": _utf16_len(text[: m.start()]), "length": _utf16_len(m.group())}
        for m in _COMMAND_RE.finditer(text)
    ]


def formatted_text(params: Params, text_key: str, entities_key: str) -> tuple[str, list[JSONDict]]:
    """Text with entities after parse_mode (or explicit entities), trimmed like Telegram does."""
    text = params.get_str(text_key) or ""
    parse_mode = (params.get_str("parse_mode") or "").lower()
    if parse_mode:
        parser = _PARSERS.get(parse_mode)
        if parser is None:
            raise ApiError.bad_request("unsupported parse_mode")
        try:
            text, entities = parser(text)
        except _MarkupError as error:
            raise ApiError.bad_request(f"can't parse entities: {error}") from None
    else:
        explicit = params.get_json(entities_key, what="entities")
        entities = _sorted_entities(e for e in explicit if isinstance(e, dict)) if isinstance(explicit, list) else []
    return _trim(text, entities)
