"""Reader for ulogpy.toml: the same sections and keys as ulogd.conf, in TOML.

`stack` and `plugin` take a list of strings (or one string).  tomllib gives
no line numbers, so they are recovered by scanning the text, which is
enough to point errors at the right line.
"""

from __future__ import annotations

import re
import tomllib

from ulogpy.config.document import Document, Entry, Section
from ulogpy.config.errors import ConfigError

_HEADER = re.compile(r"^\s*\[\s*\"?([^\]\"]+)\"?\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*\"?([A-Za-z0-9_.\-]+)\"?\s*=")


def parse_toml(text: str, path: str) -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _line_of_decode_error(str(exc))
        _raise_if_duplicate(text, path, line)
        raise ConfigError(f"invalid TOML: {exc}", file=path, line=line) from None
    lines = _locate(text)
    text_lines = text.splitlines()
    doc = Document(path=path, format="toml")
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"top-level key {name!r} must be inside a [section]",
                file=path, line=lines.get((None, name)), valid="[global] or [instance]",
            )
        section = Section(name=name, line=lines.get((name, None)))
        for key, value in table.items():
            line = lines.get((name, key))
            if isinstance(value, dict):
                raise ConfigError(
                    "nested tables are not options", file=path, line=line,
                    section=name, option=key,
                )
            values = value if isinstance(value, list) else [value]
            item_lines = _item_lines(text_lines, line, values) if isinstance(value, list) \
                else [line] * len(values)
            for item, line in zip(values, item_lines, strict=True):
                if isinstance(item, (list, dict, float)) or not isinstance(item, (str, int)):
                    raise ConfigError(
                        f"unsupported value {item!r}", file=path, line=line, section=name,
                        option=key, valid="a string or an integer",
                    )
                section.entries.append(Entry(key=key, value=item, line=line))
        doc.sections[name] = section
    return doc


def _locate(text: str) -> dict[tuple[str | None, str | None], int]:
    where: dict[tuple[str | None, str | None], int] = {}
    section: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            section = m.group(1).strip()
            where.setdefault((section, None), lineno)
            continue
        m = _KEY.match(line)
        if m:
            where.setdefault((section, m.group(1)), lineno)
    return where


def _item_lines(text_lines: list[str], start: int | None, items: list) -> list[int | None]:
    """The line of each string of a (possibly multi-line) array, for `stack = [...]`."""
    found: list[int | None] = []
    pos = start
    for item in items:
        line = None
        if pos is not None and isinstance(item, str):
            quoted = (f'"{item}"', f"'{item}'")
            for lineno in range(pos, len(text_lines) + 1):
                if any(q in text_lines[lineno - 1] for q in quoted):
                    line = pos = lineno
                    break
        found.append(line if line is not None else start)
    return found


def _raise_if_duplicate(text: str, path: str, line: int | None) -> None:
    """tomllib says only "Cannot overwrite a value": name the option and both lines."""
    if line is None:
        return
    section: str | None = None
    seen: dict[tuple[str | None, str], int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(raw)
        if m:
            section = m.group(1).strip()
            continue
        m = _KEY.match(raw)
        if not m:
            continue
        key = (section, m.group(1))
        if lineno == line and key in seen:
            raise ConfigError(
                f"given more than once (first at line {seen[key]})", file=path, line=line,
                section=section, option=m.group(1), valid="one value per option",
            )
        seen.setdefault(key, lineno)
        if lineno >= line:
            return


def _line_of_decode_error(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None
