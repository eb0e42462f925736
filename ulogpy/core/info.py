"""`ulogpy -i PLUGIN`: describe a plugin in ulogd's `-i` layout."""

from __future__ import annotations

from ulogpy.core.plugin import Kind
from ulogpy.core.registry import registry
from ulogpy.core.stack import plugin_name_from_so


def describe(name_or_path: str) -> str | None:
    """The `-i` text for a plugin name or a ulogd .so path, or None if unknown."""
    name = plugin_name_from_so(name_or_path) or name_or_path.upper()
    cls = registry().get(name)
    if cls is None:
        return None
    lines = [f"Name: {cls.name}"]
    if cls.options:
        lines.append("Config options:")
        lines += [opt.info_line for opt in cls.options]
    lines.append("Input keys:")
    if cls.kind is Kind.INPUT:
        lines.append("\tInput plugin, No keys")
    elif cls.wildcard_input or not cls.input_keys:
        lines.append("\tNo statically defined keys")
    else:
        lines += [key.info_line for key in cls.input_keys]
    lines.append("Output keys:")
    if cls.kind is Kind.OUTPUT:
        lines.append("\tOutput plugin, No keys")
    elif not cls.output_keys:
        lines.append("\tNo statically defined keys")
    else:
        lines += [key.info_line for key in cls.output_keys]
    return "\n".join(lines) + "\n"
