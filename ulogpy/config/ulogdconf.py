"""Reader for ulogd.conf syntax.

It accepts what ulogd 2.0.8 accepts in practice: `key=value`, `key value`,
`key = value`, double-quoted values with spaces or `=`, `#` comment lines,
and a trailing `# comment` after a value (ulogd ignores everything after the
value; real configs rely on that).  Unlike ulogd it reports malformed lines
instead of silently using the key name as the value, and it accepts a last
line without a newline and lines longer than 254 characters.
"""

from __future__ import annotations

from ulogpy.config.document import Document, Entry, Section
from ulogpy.config.errors import ConfigError

_DELIMS = " \t="


def parse_ulogd_conf(text: str, path: str) -> Document:
    doc = Document(path=path, format="ulogd")
    current: Section | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(
                    f"malformed section header {line!r}", file=path, line=lineno,
                    valid="[name]",
                )
            name = line[1:-1].strip()
            if name in doc.sections:
                raise ConfigError(
                    f"section [{name}] appears twice (first at line "
                    f"{doc.sections[name].line})", file=path, line=lineno, section=name,
                )
            current = Section(name=name, line=lineno)
            doc.sections[name] = current
            continue
        if current is None:
            raise ConfigError(
                f"entry {line!r} before any [section]", file=path, line=lineno,
                valid="start the file with [global]",
            )
        key, value = _split_entry(line, path, lineno, current.name)
        current.entries.append(Entry(key=key, value=value, line=lineno))
    return doc


def _split_entry(line: str, path: str, lineno: int, section: str) -> tuple[str, str]:
    i = 0
    while i < len(line) and line[i] not in _DELIMS:
        i += 1
    key = line[:i]
    while i < len(line) and line[i] in _DELIMS:
        i += 1
    rest = line[i:]
    if not rest:
        raise ConfigError(
            "has no value", file=path, line=lineno, section=section, option=key,
            valid=f'{key}=VALUE or {key}="VALUE"',
        )
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end < 0:
            raise ConfigError(
                "unterminated quoted value", file=path, line=lineno, section=section,
                option=key, valid=f'{key}="VALUE"',
            )
        value, tail = rest[1:end], rest[end + 1 :]
    else:
        j = 0
        while j < len(rest) and rest[j] not in _DELIMS:
            j += 1
        value, tail = rest[:j], rest[j:]
    tail = tail.strip(_DELIMS)
    if tail and not tail.startswith("#"):
        raise ConfigError(
            f"unexpected text {tail!r} after the value", file=path, line=lineno,
            section=section, option=key, valid='quote values with spaces: key="a b"',
        )
    return key, value
