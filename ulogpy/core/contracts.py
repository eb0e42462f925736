"""A plugin class against its contract, checked once when it registers.

Why: a plugin is called by the runner through a few methods and reads its options
from `self.config`; a wrong signature or a misspelt option name would otherwise
surface only on the first event (or the first SIGHUP) that reaches that line.  As
pluggy checks a hook implementation against its specification when it registers,
`validate_plugin_class` (`ulogpy.core.registry`) refuses such a class by name.

* `override_problem`: every method a plugin overrides keeps the base class's
  parameters (names and kinds, in order; it may add parameters with defaults).
* `option_problem`: every option a method reads, as ``self.config.NAME``, as
  ``cfg.NAME`` after ``cfg = self.config`` (or from a parameter named ``cfg`` or
  ``config``), or as ``getattr(cfg, "NAME")``, is in the plugin's option table.
  It reads the source of the methods that mention ``config`` (their code objects
  say which) and parses only those whose text shows a doubtful name, so it costs
  nothing per event and a few milliseconds at start-up for all built-in plugins.

Why not a generated typed class for type checkers: the option tables are data read
at run time, which a type checker cannot see; this check reads the same tables.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import re
from collections.abc import Iterator
from functools import cache
from itertools import chain
from operator import itemgetter
from types import CodeType, FunctionType
from typing import Any

from ulogpy.config.errors import did_you_mean

#: Parameter names taken to hold the options object.
CONFIG_PARAMS = frozenset({"cfg", "config"})
_KINDS = {FunctionType: "method", classmethod: "classmethod", staticmethod: "staticmethod",
          property: "property"}


def override_problem(cls: type, base: type) -> str | None:
    """What is wrong with the methods `cls` overrides from `base`'s contract, or None."""
    for name, theirs in _contract(base).items():
        mine = _static(cls, name)
        if mine is theirs:
            continue
        kind = _KINDS.get(type(theirs))
        if type(mine) is not type(theirs):
            return f"{name} must be a {kind} {name}{_shown(theirs)}"
        if kind == "property":
            continue
        want, got = _params(theirs, kind), _params(mine, kind)
        if want is None or got is None:
            continue  # a builtin or C callable: nothing to compare
        same = [p[:2] for p in got[:len(want)]] == [p[:2] for p in want]
        if not same or not all(p[2] for p in got[len(want):]):
            return (f"{name}{_shown(mine)} does not match the base class: "
                    f"expected {name}{_shown(theirs)}")
    return None


@cache
def _contract(base: type) -> dict[str, Any]:
    """The methods of `base` and its plugin ancestors that a plugin may override, by name."""
    found: dict[str, Any] = {}
    for klass in base.__mro__[:-1]:  # not object
        for name, value in vars(klass).items():
            if name.startswith("_") and name != "__init__":
                continue
            if type(value) in _KINDS:
                found.setdefault(name, value)
    return found


def _static(cls: type, name: str) -> Any:
    """`name` as `cls` defines or inherits it, descriptor not applied (no instance needed)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _function(attr: Any) -> Any:
    return inspect.unwrap(attr.__func__ if isinstance(attr, (classmethod, staticmethod))
                          else attr)


def _params(attr: Any, kind: str | None) -> list[tuple[str, Any, bool]] | None:
    """(name, kind, has a default) of each parameter, without the bound first one."""
    try:
        sig = inspect.signature(_function(attr))
    except (TypeError, ValueError):
        return None
    params = [(p.name, p.kind, p.default is not p.empty
               or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)) for p in sig.parameters.values()]
    return params[1:] if kind in ("method", "classmethod") else params


def _shown(attr: Any) -> str:
    """The parameter list of `attr` without annotations: ``(self, loop)``."""
    try:
        sig = inspect.signature(_function(attr.fget if isinstance(attr, property) else attr))
    except (TypeError, ValueError):
        return "(...)"
    plain = [p.replace(annotation=p.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=plain, return_annotation=sig.empty))


# ------------------------------------------------------------------ option names


def option_problem(cls: type, core_module: str) -> str | None:
    """The first option `cls`'s methods use that its option table lacks, or None.

    Methods of classes defined in `core_module` (the plugin base classes) are not
    read: they know no plugin's options.
    """
    valid = {opt.name for opt in cls.options}
    for klass in cls.__mro__:
        if klass.__module__ == core_module or klass is object:
            continue
        for attr_name, value in vars(klass).items():
            for func in _functions(value):
                if all(_allowed(name, valid) for name in _near_options(func)):
                    continue  # the usual case: settled without parsing
                for option, line in _option_uses_of(func):
                    if _allowed(option, valid):
                        continue
                    hint = did_you_mean(option, sorted(valid))
                    options = ", ".join(o.name for o in cls.options) or "none"
                    return (f"{klass.__name__}.{attr_name} uses option {option!r} "
                            f"({func.__code__.co_filename}:{line}), which is not in its "
                            f"option table; {hint}options: {options}")
    return None


def _allowed(name: str, valid: set[str]) -> bool:
    """An option, or pydantic's own API on the options model (model_dump, ...)."""
    return name in valid or name.startswith(("model_", "__"))


def _functions(value: Any) -> Iterator[FunctionType]:
    """The Python functions behind a class attribute (method, property, ...)."""
    parts = (value.fget, value.fset, value.fdel) if isinstance(value, property) else (value,)
    for part in parts:
        if part is None:
            continue
        func = _function(part)
        if isinstance(func, FunctionType):
            yield func


def _codes(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _codes(const)


@cache
def _source(func: FunctionType) -> str | None:
    """`func`'s own source lines, dedented, if it mentions the options at all.

    None when its code objects name neither ``config`` nor a `CONFIG_PARAMS`
    parameter (then it reads no option), or when there is no source (a function
    built by exec, a zip without .py files): then there is nothing to check.
    """
    codes = list(_codes(func.__code__))
    if not any("config" in c.co_names or CONFIG_PARAMS & set(c.co_varnames) for c in codes):
        return None
    lines = linecache.getlines(func.__code__.co_filename)
    start = func.__code__.co_firstlineno - 1
    end = max(filter(None, map(itemgetter(1), chain.from_iterable(
        c.co_positions() for c in codes))), default=0)
    chunk = lines[start:end]
    if not chunk:
        return None
    indent = chunk[0][: len(chunk[0]) - len(chunk[0].lstrip())]
    return "".join(line[len(indent):] if line.startswith(indent) else line for line in chunk)


#: ``WORD . NAME`` (spaces, line continuations and a closing parenthesis allowed before the
#: dot); the lookahead lets ``self.config.NAME`` give both pairs.
_DOTTED = re.compile(r"\b([A-Za-z_]\w*)[\s\\)]*\.(?=[\s\\]*([A-Za-z_]\w*))")
_ASSIGNED = re.compile(r"\b([A-Za-z_]\w*)\s*(?::[^=\n]*)?=(?!=)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


@cache
def _near_options(func: FunctionType) -> frozenset[str]:
    """Every name `func` may read as an option, found with regular expressions.

    Why: parsing costs about 0.3 ms per method and most plugins are right, so only a
    method whose text shows a doubtful name is parsed (`_option_uses_of` judges).  For
    code as people write it this is a superset of what the parse finds (a unit test
    checks that on every built-in plugin): it takes ``config``, ``cfg`` and any name
    assigned on a line that mentions ``config`` as the options object.
    """
    text = _source(func)
    if text is None:
        return frozenset()
    holders = set(CONFIG_PARAMS)
    for line in text.splitlines():
        if "config" in line:
            holders.update(_ASSIGNED.findall(line))
    found = {name for word, name in _DOTTED.findall(text) if word in holders}
    if "getattr" in text:
        found.update(const for code in _codes(func.__code__) for const in code.co_consts
                     if isinstance(const, str) and _IDENTIFIER.fullmatch(const))
    return frozenset(found)


@cache
def _option_uses_of(func: FunctionType) -> tuple[tuple[str, int], ...]:
    """(option, line) of every option `func` reads, from its parsed source."""
    text = _source(func)
    if text is None:
        return ()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return ()
    first = func.__code__.co_firstlineno - 1
    return tuple((option, node.lineno + first) for node, option in _option_uses(tree))


def _option_uses(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """(node, option name) of every option read from the options object in `tree`."""
    func = next((n for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))), None)
    if func is None:
        return
    args = [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]
    owner = args[0].arg if args else None
    aliases = {a.arg for a in args if a.arg in CONFIG_PARAMS}

    def is_config(node: ast.AST | None) -> bool:
        if isinstance(node, ast.Name):
            return node.id in aliases
        return (isinstance(node, ast.Attribute) and node.attr == "config"
                and isinstance(node.value, ast.Name) and node.value.id == owner)

    nodes = list(ast.walk(func))
    for node in nodes:  # `cfg = self.config` anywhere makes `cfg` an alias
        if isinstance(node, ast.Assign) and is_config(node.value):
            aliases.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif (isinstance(node, ast.AnnAssign) and is_config(node.value)
              and isinstance(node.target, ast.Name)):
            aliases.add(node.target.id)
    for node in nodes:
        if isinstance(node, ast.Attribute) and is_config(node.value):
            yield node, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "getattr" and len(node.args) >= 2
              and is_config(node.args[0]) and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            yield node, node.args[1].value
