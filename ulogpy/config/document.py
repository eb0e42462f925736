"""The parsed form of a configuration file, before validation.

Both readers (ulogd.conf and TOML) produce a `Document`: sections of
entries that remember their line, so every later error can point at
file:line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Entry:
    key: str
    value: str | int | bool
    line: int | None


@dataclass(slots=True)
class Section:
    name: str
    line: int | None
    entries: list[Entry] = field(default_factory=list)

    def get_all(self, key: str) -> list[Entry]:
        return [e for e in self.entries if e.key == key]


@dataclass(slots=True)
class Document:
    path: str
    format: str  # "ulogd" or "toml"
    sections: dict[str, Section] = field(default_factory=dict)
