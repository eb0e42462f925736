"""Plugin registry: the built-in plugins plus third-party ones.

Built-in plugins live in `ulogpy.plugins.{input,filter,output}`, one module
each.  Third-party packages register theirs through the entry-point group
`ulogpy.plugins` (`NAME = "package.module:PluginClass"`).  Every class is
checked when it registers, as pluggy checks hooks, so a broken plugin is
refused at load time with its name instead of failing on the first event.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points

from ulogpy.core.contracts import option_problem, override_problem
from ulogpy.core.plugin import FilterPlugin, InputPlugin, Kind, OutputPlugin, Plugin

ENTRY_POINT_GROUP = "ulogpy.plugins"
_BASES = {Kind.INPUT: InputPlugin, Kind.FILTER: FilterPlugin, Kind.OUTPUT: OutputPlugin}


class RegistryError(Exception):
    pass


def validate_plugin_class(cls: type) -> None:
    """Refuse a plugin class whose declaration is incomplete or inconsistent."""
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise RegistryError(f"{cls!r} is not a ulogpy Plugin subclass")
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str) or not name.isupper():
        raise RegistryError(f"{cls.__qualname__}: `name` must be an upper-case string")
    base = _BASES[cls.kind]
    if not issubclass(cls, base):
        raise RegistryError(f"plugin {name}: kind {cls.kind.value} needs base {base.__name__}")
    text_output = cls.kind is Kind.OUTPUT and cls.renders_text
    method = "interp" if cls.kind is Kind.FILTER else "render" if text_output else None
    if method is not None and getattr(cls, method) is getattr(base, method):
        raise RegistryError(f"plugin {name}: does not implement {method}()")
    seen: set[str] = set()
    for opt in cls.options:
        if opt.name in seen:
            raise RegistryError(f"plugin {name}: option {opt.name!r} declared twice")
        seen.add(opt.name)
        if opt.type not in (int, str):
            raise RegistryError(f"plugin {name}: option {opt.name!r} must be int or str")
    if cls.kind is Kind.INPUT and cls.input_keys:
        raise RegistryError(f"plugin {name}: an input plugin takes no input keys")
    if cls.kind is Kind.OUTPUT and cls.output_keys:
        raise RegistryError(f"plugin {name}: an output plugin gives no output keys")
    problem = override_problem(cls, base) or option_problem(cls, Plugin.__module__)
    if problem:
        raise RegistryError(f"plugin {name}: {problem}")


def _builtin_classes() -> list[type]:
    import ulogpy.plugins as pkg

    found = []
    for group in ("input", "filter", "output"):
        sub = importlib.import_module(f"{pkg.__name__}.{group}")
        for info in pkgutil.iter_modules(sub.__path__):
            module = importlib.import_module(f"{sub.__name__}.{info.name}")
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, Plugin)
                    and obj.__module__ == module.__name__
                    and "name" in vars(obj)
                ):
                    found.append(obj)
    return found


@cache
def registry() -> dict[str, type]:
    """All plugins by name.  Built-ins win over an entry point of the same name."""
    plugins: dict[str, type] = {}
    for cls in _builtin_classes():
        validate_plugin_class(cls)
        if cls.name in plugins:
            raise RegistryError(f"plugin {cls.name} is defined twice")
        plugins[cls.name] = cls
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken third-party package must not kill the daemon
            raise RegistryError(f"entry point {ep.name} ({ep.value}): cannot load: {exc}") from exc
        validate_plugin_class(cls)
        if cls.name != ep.name:
            raise RegistryError(f"entry point {ep.name} names a plugin called {cls.name}")
        plugins.setdefault(cls.name, cls)
    return plugins


def get_plugin(name: str) -> type | None:
    return registry().get(name)
