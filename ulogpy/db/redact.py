"""Keep database passwords out of log lines and error messages.

ulogd logs the whole connection string, password included, when a
connection fails (spec 8.4 O9).  libpq and psycopg messages can quote
parts of a malformed connection string, so every text that may reach the
log passes through a `Redactor` that knows the configured secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)", re.IGNORECASE)
_URI = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


def secrets_of_conninfo(conninfo: str) -> list[str]:
    """Password values written in a `key=value` string or a URI (even a malformed one)."""
    found = []
    for m in _KV.finditer(conninfo):
        value = m.group(2)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            found.append(value)
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value)
    found += [m.group(2) for m in _URI.finditer(conninfo)]
    return [s for s in found if s]


class Redactor:
    """Replaces the known secrets, and anything shaped like a password, by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for secret in self.secrets:
            out = out.replace(secret, MASK)
        out = _KV.sub(lambda m: m.group(1) + MASK, out)
        return _URI.sub(lambda m: m.group(1) + MASK + m.group(3), out)
