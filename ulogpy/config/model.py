"""The configuration model: one pydantic model behind ulogd.conf and TOML.

`Config` holds the `[global]` options and the raw instance sections; each
instance's options are validated against its plugin's option table when the
stack that uses it is built (only then is the plugin known).  Validation
errors are translated into `ConfigError`s that name file, line, section and
option, and list what would be valid.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)

from ulogpy.config.document import Document, Section
from ulogpy.config.errors import ConfigError, did_you_mean

_INT = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")


def parse_c_int(value: Any) -> int:
    """Integers as ulogd reads them: decimal, 0x hex, leading-0 octal.

    Unlike ulogd, garbage is an error instead of 0.  Values are kept as
    Python ints; plugins that need C wrap-around do it themselves.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INT.match(text):
            sign = -1 if text.startswith("-") else 1
            body = text.lstrip("+-")
            if body.lower().startswith("0x"):
                return sign * int(body, 16)
            if len(body) > 1 and body.startswith("0"):
                return sign * int(body, 8)
            return sign * int(body)
    raise ValueError("not an integer (decimal, 0x hex or 0 octal)")


CInt = Annotated[int, BeforeValidator(parse_c_int)]


def _as_str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("not a string")
    return str(value)


CStr = Annotated[str, BeforeValidator(_as_str)]
#: What `metrics_listen` / `--metrics-listen` takes.
LISTEN_FORMAT = "HOST:PORT (e.g. 127.0.0.1:9077, [::1]:9077), or empty for no metrics"


def parse_listen(value: str) -> tuple[str, int] | None:
    """(host, port) from "HOST:PORT" ("[v6]:PORT" too); None for ""; ValueError else."""
    text = value.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{value}' is not HOST:PORT with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"'{value}': write an IPv6 address in brackets, [ADDR]:PORT")
    return host, int(port)


def _check_listen(value: str) -> str:
    parse_listen(value)  # ValueError names what is wrong
    return value


LOGLEVELS = {1: "debug", 3: "info", 5: "notice", 7: "error", 8: "fatal"}


class GlobalOptions(BaseModel):
    """The `[global]` section."""

    model_config = ConfigDict(extra="forbid")

    logfile: CStr | None = None
    loglevel: CInt = Field(
        default=5, ge=1, le=8, description="1 debug, 3 info, 5 notice, 7 error, 8 fatal"
    )
    plugin: list[CStr] = []
    stack: list[CStr] = []
    #: ulogpy: seconds between counter reports in the log (0 = only on SIGUSR1 and at exit).
    stats_interval: CInt = Field(default=300, ge=0)
    #: ulogpy: "HOST:PORT" of the Prometheus /metrics endpoint ("" = none).
    metrics_listen: Annotated[CStr, AfterValidator(_check_listen)] = Field(
        default="", description=LISTEN_FORMAT)


MULTI_GLOBAL_KEYS = ("plugin", "stack")


class Config(BaseModel):
    """A whole configuration file."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    global_options: GlobalOptions
    document: Document

    def section(self, name: str) -> Section | None:
        return self.document.sections.get(name)

    def line_of_stack(self, index: int) -> int | None:
        entries = self.document.sections["global"].get_all("stack")
        return entries[index].line if index < len(entries) else None


def build_config(doc: Document) -> Config:
    glob = doc.sections.get("global")
    if glob is None:
        raise ConfigError(
            "section [global] not found", file=doc.path,
            valid="a [global] section with at least one stack= line",
        )
    values = section_values(doc, glob, GlobalOptions, multi=MULTI_GLOBAL_KEYS)
    opts = validate_model(GlobalOptions, values, doc, glob)
    if not opts.stack:
        raise ConfigError(
            "no stack defined", file=doc.path, line=glob.line, section="global",
            valid="stack=id:INPUT,...,id:OUTPUT",
        )
    return Config(path=doc.path, global_options=opts, document=doc)


def section_values(
    doc: Document, section: Section, model: type[BaseModel], multi: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Entries as a dict, refusing unknown and duplicated keys with their line."""
    known = list(model.model_fields)
    values: dict[str, Any] = {}
    first_line: dict[str, int | None] = {}
    for entry in section.entries:
        if entry.key not in model.model_fields:
            raise ConfigError(
                f"unknown option '{entry.key}'; {did_you_mean(entry.key, known)}".rstrip("; "),
                file=doc.path, line=entry.line, section=section.name, option=entry.key,
                valid=", ".join(known) if known else "this plugin takes no options",
            )
        if entry.key in multi:
            values.setdefault(entry.key, []).append(entry.value)
        elif entry.key in values:
            raise ConfigError(
                f"given more than once (first at line {first_line[entry.key]})",
                file=doc.path, line=entry.line, section=section.name, option=entry.key,
                valid="one value per option",
            )
        else:
            values[entry.key] = entry.value
            first_line[entry.key] = entry.line
    return values


def validate_model(model: type[BaseModel], values: dict, doc: Document, section: Section):
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = str(err["loc"][0]) if err["loc"] else None
        entries = section.get_all(option) if option else []
        line = entries[0].line if entries else section.line
        field = model.model_fields.get(option) if option else None
        raise ConfigError(
            f"bad value {values.get(option)!r}: {_reason(err)}",
            file=doc.path, line=line, section=section.name, option=option,
            valid=_describe(field),
        ) from None


def _reason(err: dict) -> str:
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _describe(field: Any) -> str | None:
    if field is None:
        return None
    desc = field.description
    if desc:
        return desc
    ann = field.annotation
    meta = getattr(field, "metadata", [])
    bounds = [m for m in meta if hasattr(m, "ge") or hasattr(m, "le")]
    text = "an integer" if ann is int else "a string"
    for b in bounds:
        if hasattr(b, "ge"):
            text += f" >= {b.ge}"
        if hasattr(b, "le"):
            text += f" <= {b.le}"
    return text


@cache
def options_model(plugin_cls: type) -> type[BaseModel]:
    """A pydantic model built from a plugin's option table (cached per plugin)."""
    fields: dict[str, Any] = {}
    for opt in plugin_cls.options:
        base = CInt if opt.type is int else CStr
        valid = _option_valid_text(opt)
        fields[opt.name] = (base, Field(default=opt.default, description=valid))
    model = create_model(
        f"{plugin_cls.name}Options", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def _option_valid_text(opt: Any) -> str:
    if opt.choices:
        return ", ".join(opt.choices)
    if opt.help:
        return opt.help
    return "an integer (decimal or 0x hex)" if opt.type is int else "a string"


def validate_instance(
    plugin_cls: type, instance_id: str, doc: Document, used_at: int | None = None
) -> BaseModel:
    """Validate the `[instance_id]` section against `plugin_cls`'s options.

    `used_at` is the line of the stack that uses the instance: a missing
    section is reported there.
    """
    model = options_model(plugin_cls)
    section = doc.sections.get(instance_id)
    if section is None:
        if plugin_cls.section_required or any(o.mandatory for o in plugin_cls.options):
            raise ConfigError(
                f"section [{instance_id}] not found; plugin {plugin_cls.name} "
                f"({instance_id}:{plugin_cls.name} in the stack) needs one",
                file=doc.path, line=used_at, section=instance_id,
                valid="options: " + ", ".join(o.name for o in plugin_cls.options),
            )
        return model()
    values = section_values(doc, section, model)
    for opt in plugin_cls.options:
        if opt.mandatory and opt.name not in values:
            raise ConfigError(
                f"mandatory option '{opt.name}' missing", file=doc.path, line=section.line,
                section=instance_id, option=opt.name, valid=_option_valid_text(opt),
            )
    config = validate_model(model, values, doc, section)
    for opt in plugin_cls.options:
        value = getattr(config, opt.name)
        problem = None
        if opt.choices and value not in opt.choices and opt.name in values:
            problem = f"bad value {value!r}"
        elif opt.check and opt.name in values:
            problem = opt.check(value)
        if problem:
            entry = section.get_all(opt.name)[0]
            raise ConfigError(
                problem, file=doc.path, line=entry.line, section=instance_id,
                option=opt.name, valid=_option_valid_text(opt),
            )
    return config
