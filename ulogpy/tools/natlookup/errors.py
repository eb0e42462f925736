"""The one error type of nat-lookup: a message for the user, exit status 2."""

from __future__ import annotations


class LookupFailed(Exception):
    """Bad input or an unreadable source; `str()` is the whole message."""
