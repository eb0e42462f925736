"""Building stacks: plugin look-up, option validation, key resolution.

Follows ulogd's model (spec section 3): a stack is `id:PLUGIN,...` from one
input through filters to one output.  Every input key is bound at load time
to the nearest upstream plugin that gives a key of that name.  An input id
used by several stacks is one instance (one kernel socket) feeding all of
them; filters and outputs are separate instances per stack.

Everything that can be wrong is found here, before anything starts, and
reported as a `ConfigError` naming the file, line, section and plugin.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ulogpy.config.errors import ConfigError, did_you_mean
from ulogpy.config.model import Config, validate_instance
from ulogpy.core.keys import Key
from ulogpy.core.plugin import (
    DataType,
    FilterPlugin,
    InputPlugin,
    Kind,
    OutputPlugin,
    Plugin,
    PluginError,
)
from ulogpy.core.registry import registry

log = logging.getLogger("ulogpy.stack")
MAX_ID_LEN = 30


@dataclass
class Stack:
    """One `stack=` line, built."""

    text: str
    line: int | None
    input: InputPlugin
    filters: list[FilterPlugin]
    output: OutputPlugin

    @property
    def instances(self) -> list[Plugin]:
        return [self.input, *self.filters, self.output]


@dataclass
class Pipeline:
    """All stacks of a configuration, with each input instance once."""

    stacks: list[Stack] = field(default_factory=list)
    inputs: list[InputPlugin] = field(default_factory=list)

    @property
    def outputs(self) -> list[OutputPlugin]:
        return [s.output for s in self.stacks]

    def stacks_of(self, inp: InputPlugin) -> list[Stack]:
        return [s for s in self.stacks if s.input is inp]

    def instances(self) -> list[Plugin]:
        """Every distinct instance, inputs first."""
        seen: dict[int, Plugin] = {}
        for stack in self.stacks:
            for inst in stack.instances:
                seen.setdefault(id(inst), inst)
        return list(seen.values())


def plugin_name_from_so(path: str) -> str | None:
    """`/usr/lib/.../ulogd_inppkt_NFLOG.so` -> `NFLOG`; None if not a ulogd plugin name."""
    base = os.path.basename(path)
    if not (base.startswith("ulogd_") and base.endswith(".so")):
        return None
    stem = base[len("ulogd_") : -len(".so")]
    kind, _, name = stem.partition("_")
    return name if kind and name else None


def _loaded_plugins(config: Config) -> set[str] | None:
    """Plugins made available by `plugin=` lines, or None when there are none (all load)."""
    entries = config.document.sections["global"].get_all("plugin")
    if not entries:
        return None
    known = registry()
    names: set[str] = set()
    for entry in entries:
        value = str(entry.value)
        name = plugin_name_from_so(value) or (value if value.isupper() else None)
        if name is None:
            raise ConfigError(
                f"'{value}' is not a ulogd plugin file", file=config.path, line=entry.line,
                section="global", option="plugin",
                valid="a path ending in ulogd_<kind>_<NAME>.so, or a plugin NAME",
            )
        if name not in known:
            log.warning(
                "%s:%s: plugin %s is not built into ulogpy; stacks using it will be refused",
                config.path, entry.line, name,
            )
        names.add(name)
    return names


def build_pipeline(config: Config) -> Pipeline:
    """Build every stack or raise the first `ConfigError`."""
    loaded = _loaded_plugins(config)
    pipeline = Pipeline()
    inputs: dict[str, InputPlugin] = {}
    for index, text in enumerate(config.global_options.stack):
        line = config.line_of_stack(index)
        stack = _build_stack(config, text, line, loaded, inputs)
        pipeline.stacks.append(stack)
    for stack in pipeline.stacks:
        if stack.input not in pipeline.inputs:
            pipeline.inputs.append(stack.input)
    return pipeline


def parse_stack_tokens(config: Config, text: str, line: int | None) -> list[tuple[str, str]]:
    tokens = []
    for raw in text.replace("\n", ",").split(","):
        token = raw.strip()
        if not token:
            raise ConfigError(
                f"empty element in stack '{text}'", file=config.path, line=line,
                section="global", option="stack", valid="id:PLUGIN,id:PLUGIN,...",
            )
        inst_id, sep, name = token.partition(":")
        if not sep or not inst_id or not name:
            raise ConfigError(
                f"element '{token}' is not of the form id:PLUGIN", file=config.path, line=line,
                section="global", option="stack", valid="id:PLUGIN, e.g. ct1:NFCT",
            )
        if len(inst_id) > MAX_ID_LEN:
            raise ConfigError(
                f"instance id '{inst_id}' is longer than {MAX_ID_LEN} characters",
                file=config.path, line=line, section="global", option="stack",
            )
        tokens.append((inst_id, name))
    return tokens


def _build_stack(
    config: Config, text: str, line: int | None, loaded: set[str] | None,
    inputs: dict[str, InputPlugin],
) -> Stack:
    known = registry()
    tokens = parse_stack_tokens(config, text, line)

    def fail(message: str, valid: str | None = None, section: str | None = "global") -> None:
        raise ConfigError(
            f"stack '{text}': {message}", file=config.path, line=line, section=section,
            option="stack" if section == "global" else None, valid=valid,
        )

    classes: list[type] = []
    for inst_id, name in tokens:
        cls = known.get(name)
        if cls is None:
            fail(
                f"unknown plugin '{name}' (instance {inst_id}); "
                f"{did_you_mean(name, sorted(known))}".rstrip("; "),
                valid=", ".join(sorted(known)),
            )
        if loaded is not None and name not in loaded:
            fail(f"plugin '{name}' is not loaded by any plugin= line",
                 valid=", ".join(sorted(loaded)))
        refusal = cls.refusal(inst_id, tokens, config)  # a plugin ulogpy only describes
        if refusal is not None:
            fail(refusal)
        classes.append(cls)
    ids = [t[0] for t in tokens]
    for inst_id in ids:
        if ids.count(inst_id) > 1:
            fail(f"instance id '{inst_id}' appears twice in one stack")
    if classes[0].kind is not Kind.INPUT:
        fail(
            f"the first plugin must be an input, but {classes[0].name} is a "
            f"{classes[0].kind.value}", valid=_names_of(Kind.INPUT),
        )
    if len(classes) < 2 or classes[-1].kind is not Kind.OUTPUT:
        fail(
            f"the last plugin must be an output, but {classes[-1].name} is a "
            f"{classes[-1].kind.value}", valid=_names_of(Kind.OUTPUT),
        )
    for (inst_id, name), cls in zip(tokens[1:-1], classes[1:-1], strict=True):
        if cls.kind is not Kind.FILTER:
            fail(
                f"{inst_id}:{name} is an {cls.kind.value}; only filters may stand between "
                "the input and the output", valid=_names_of(Kind.FILTER),
            )

    instances: list[Plugin] = []
    for (inst_id, name), cls in zip(tokens, classes, strict=True):
        if cls.kind is Kind.INPUT and inst_id in inputs:
            shared = inputs[inst_id]
            if shared.name != name:
                fail(f"input id '{inst_id}' is already used for plugin {shared.name}")
            instances.append(shared)
            log.info("%s instance already loaded", inst_id)
            continue
        options = validate_instance(cls, inst_id, config.document, line)
        instance = cls(inst_id, options)
        instance.config_path = config.path
        instances.append(instance)
    _resolve_keys(config, text, line, instances)
    for inst in instances[1:]:  # what the stack carries (XML names its file after it)
        inst.source_type = instances[0].output_type
    _warn_type_mismatch(instances)
    for inst in instances:
        try:
            if not (inst.kind is Kind.INPUT and inst.id in inputs):
                inst.configure()
            if isinstance(inst, OutputPlugin) and (problem := inst.check_delivery()):
                raise PluginError(problem)
        except ConfigError:
            raise
        except Exception as exc:  # PluginError and friends carry the reason
            raise ConfigError(
                f"plugin {inst.name}: {exc}", file=config.path,
                line=_section_line(config, inst.id), section=inst.id,
            ) from None
    first = instances[0]
    assert isinstance(first, InputPlugin)
    inputs.setdefault(first.id, first)
    return Stack(text=text, line=line, input=first, filters=instances[1:-1],  # type: ignore[arg-type]
                 output=instances[-1])  # type: ignore[arg-type]


def _section_line(config: Config, name: str) -> int | None:
    section = config.section(name)
    return section.line if section else None


def _names_of(kind: Kind) -> str:
    return ", ".join(sorted(n for n, c in registry().items() if c.kind is kind))


def _resolve_keys(config: Config, text: str, line: int | None, instances: list[Plugin]) -> None:
    for pos, inst in enumerate(instances):
        if pos == 0:
            continue
        upstream = instances[:pos]
        if inst.wildcard_input:
            inst.stack_keys = _wildcard_keys(upstream)
            continue
        for key in inst.input_keys:
            provider = _nearest_provider(upstream, key.name)
            if provider is None and not key.optional:
                givers = sorted(n for n, c in registry().items()
                                if any(k.name == key.name for k in c.output_keys))
                raise ConfigError(
                    f"stack '{text}': input key '{key.name}' of {inst.id}:{inst.name} is "
                    "not given by any plugin before it in the stack",
                    file=config.path, line=line, section="global", option="stack",
                    valid="put one of these before it: " + (", ".join(givers) or "none"),
                )


def _nearest_provider(upstream: list[Plugin], name: str) -> Plugin | None:
    for inst in reversed(upstream):
        if any(k.name == name for k in inst.output_keys):
            return inst
    return None


def _wildcard_keys(upstream: list[Plugin]) -> list[Key]:
    """One input per upstream output key, in stack order, as ulogd creates them.

    A name given by several plugins appears once per giver (GPRINT and OPRINT
    print it that many times; JSON keeps the first position), each occurrence
    typed as the nearest provider, which is where ulogd binds all of them.
    """
    nearest: dict[str, Key] = {}
    for inst in upstream:
        for key in inst.output_keys:
            nearest[key.name] = key
    return [nearest[key.name] for inst in upstream for key in inst.output_keys]


def _warn_type_mismatch(instances: list[Plugin]) -> None:
    for prev, cur in zip(instances, instances[1:], strict=False):
        if prev.output_type and cur.input_type and not (prev.output_type & cur.input_type):
            if cur.input_type & DataType.SOURCE:
                continue
            log.warning("type mismatch between %s and %s in stack", cur.name, prev.name)


def load_pipeline(path: str | None) -> tuple[Config, Pipeline]:
    """The configuration `-c path` means, with its stacks built (nothing started).

    The daemon, `db init` and `nat-lookup` all start here; every problem is a
    `ConfigError` (a broken third-party plugin included), so each caller has one
    error to report.
    """
    from ulogpy.config.load import load
    from ulogpy.core.registry import RegistryError

    config = load(path)
    try:
        return config, build_pipeline(config)
    except RegistryError as exc:
        raise ConfigError(str(exc), file=config.path) from None
