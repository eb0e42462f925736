"""Configuration errors that name where the problem is and what would be valid."""

from __future__ import annotations


class ConfigError(Exception):
    """A problem in the configuration, located as precisely as it can be."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        section: str | None = None,
        option: str | None = None,
        valid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.section = section
        self.option = option
        self.valid = valid

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        ctx = ""
        if self.section is not None:
            ctx += f"[{self.section}] "
        if self.option is not None:
            ctx += f"{self.option}: "
        text = f"{where}{ctx}{self.message}"
        if self.valid:
            text += f" (valid: {self.valid})"
        return text


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A hint for typos, or an empty string."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""
