"""Declarative header tables, compiled into one decode function per header.

Why tables: each protocol header is described once, as scapy declares its
fields -- key name, byte offset, struct format, key type -- plus the few
things ulogd does to a value (a bit range, a byte-order quirk, a condition
on another field).  The same table gives the plugin its key list (`keys`)
and the per-packet decoder, so the two cannot drift apart.

Why code generation: this runs for every logged packet.  A generic loop over
the table costs a tuple unpack and a branch per field; the generated function
instead does one `struct.unpack_from` for the whole header and then one plain
dict store per key, which is what hand-written code would do.

Two forms are generated.  `Header.compile()` gives ``decode(buf, off, out)
-> tuple``: it reads ``buf[off : off + header.size]`` (the caller checks that
those bytes exist), stores the keys in `out` and returns the values of the
header's `returns` fields (next-header numbers) for the caller's dispatch.
`Header.compile_layer()` gives a last-layer decoder ``decode(buf, off, rem,
out) -> status`` that first checks that `rem` (the bytes left) holds the
header -- ulogd's "stop silently when too short" -- and returns OK/TRUNCATED.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ulogpy.core.codegen import define
from ulogpy.core.keys import Key, KeyType

#: Decoder results: the layer decoded completely, stopped because the bytes
#: ran out, or the family/protocol is not one BASE decodes.
OK, TRUNCATED, UNKNOWN = 0, 1, 2

_LITTLE = sys.byteorder == "little"

#: Value conversions a field may ask for: an expression template over `{v}`.
#: ulogd's quirks depend on the host's byte order; these follow this host's.
CONVERSIONS: dict[str, str] = {
    # ulogd stores the raw network bytes of some checksums in a host u16
    # without ntohs: on a little-endian host the number comes out byte-swapped.
    "host_u16": "((({v}) >> 8) | ((({v}) & 0xFF) << 8))" if _LITTLE else "({v})",
    # ulogd applies ntohs() to a 4-bit field and stores the result in a u8:
    # on a little-endian host that keeps the swapped value's low byte, i.e. 0.
    "ntohs_u8": "(({v}) >> 8)" if _LITTLE else "({v})",
    # An IPv4 address that ulogd turns into a host-order integer before storing
    # it in an address key: in memory (what consumers see) its bytes are reversed.
    "host_ip4": f"({{v}}).to_bytes(4, {sys.byteorder!r})",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a header.

    `key` is the output key name, or a name starting with ``_`` for a value the
    decoder only needs internally (next header, length).  `fmt` is a struct code
    in network order (``B``, ``H``, ``I``, ``4s``, ...) read at byte `offset`;
    fields sharing a slot must use the same format.  `bits` = (shift, mask)
    takes a bit range of an integer slot.  `conv` names a `CONVERSIONS` entry.
    `when` is a Python condition over other fields written as ``{key}``; the key
    is then set only when it holds (ulogd's per-type ICMP fields, TCP urgp).
    """

    key: str
    offset: int
    fmt: str
    type: KeyType | None = None
    bits: tuple[int, int] | None = None
    conv: str | None = None
    when: str | None = None
    cim_name: str | None = None

    @property
    def is_key(self) -> bool:
        return not self.key.startswith("_")


@dataclass(frozen=True)
class Header:
    """A header: its fields and the names the decoder returns to its caller."""

    name: str
    fields: tuple[Field, ...]
    returns: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Bytes the decoder reads: the end of the furthest slot."""
        return max(f.offset + struct.calcsize("!" + f.fmt) for f in self.fields)

    @property
    def keys(self) -> tuple[Key, ...]:
        """The output keys this header can set, in table order, each once."""
        seen: dict[str, Key] = {}
        for f in self.fields:
            if f.is_key and f.key not in seen:
                if f.type is None:
                    raise ValueError(f"{self.name}: key field {f.key} has no type")
                seen[f.key] = Key(f.key, f.type, cim_name=f.cim_name)
        return tuple(seen.values())

    def compile(self) -> Callable[[Any, int, dict], tuple]:
        return compile_header(self)

    def compile_layer(self) -> Callable[[Any, int, int, dict], int]:
        return compile_header(self, layer=True)  # type: ignore[return-value]


_REF = re.compile(r"\{([^{}]+)\}")


def _slots(header: Header) -> list[tuple[int, str]]:
    """Distinct (offset, fmt) slots in offset order; refuse overlaps."""
    slots: dict[int, str] = {}
    for f in header.fields:
        if slots.setdefault(f.offset, f.fmt) != f.fmt:
            raise ValueError(f"{header.name}: offset {f.offset} read as {slots[f.offset]} "
                             f"and as {f.fmt}")
    ordered = sorted(slots.items())
    end = 0
    for off, fmt in ordered:
        if off < end:
            raise ValueError(f"{header.name}: slot at offset {off} overlaps the previous one")
        end = off + struct.calcsize("!" + fmt)
    return ordered


def compile_header(header: Header, layer: bool = False) -> Callable[..., Any]:
    """Generate the decoder of `header` (see the module docstring for both forms)."""
    slots = _slots(header)
    fmt, pos = ["!"], 0
    local = {}
    for i, (off, sfmt) in enumerate(slots):
        if off > pos:
            fmt.append(f"{off - pos}x")
        fmt.append(sfmt)
        local[off] = f"s{i}"
        pos = off + struct.calcsize("!" + sfmt)
    unpacker = struct.Struct("".join(fmt))

    value: dict[str, str] = {}
    for f in header.fields:
        expr = local[f.offset]
        if f.bits is not None:
            shift, mask = f.bits
            expr = f"(({expr} >> {shift}) & {mask:#x})" if shift else f"({expr} & {mask:#x})"
        if f.conv is not None:
            expr = CONVERSIONS[f.conv].format(v=expr)
        value.setdefault(f.key, expr)

    def resolve(cond: str) -> str:
        def sub(m: re.Match) -> str:
            if m.group(1) not in value:
                raise ValueError(f"{header.name}: condition names unknown field {m.group(1)}")
            return value[m.group(1)]

        return _REF.sub(sub, cond)

    names = ", ".join(local[off] for off, _ in slots)
    if layer:
        lines = [f"def decode_{header.name}(buf, off, rem, out):",
                 f"    if rem < {unpacker.size}:",
                 f"        return {TRUNCATED}"]
    else:
        lines = [f"def decode_{header.name}(buf, off, out):"]
    lines.append(f"    {names}, = _unpack(buf, off)")
    for f in header.fields:
        if not f.is_key:
            continue
        store = f"out[{f.key!r}] = {value[f.key]}"
        if f.when is not None:
            lines.append(f"    if {resolve(f.when)}:")
            lines.append(f"        {store}")
        else:
            lines.append(f"    {store}")
    for name in header.returns:
        if name not in value:
            raise ValueError(f"{header.name}: returns unknown field {name}")
    if layer:
        lines.append(f"    return {OK}")
    else:
        lines.append(f"    return ({''.join(value[n] + ', ' for n in header.returns)})")
    # inspect.getsource(decoder) shows the generated code (see ulogpy.core.codegen).
    return define(lines, f"decode_{header.name}", f"header {header.name}",
                  {"_unpack": unpacker.unpack_from})


def header_keys(headers: Sequence[Header]) -> dict[str, Key]:
    """All keys of several headers by name; a name declared twice must agree on type."""
    out: dict[str, Key] = {}
    for h in headers:
        for k in h.keys:
            prev = out.setdefault(k.name, k)
            if prev != k:
                raise ValueError(f"key {k.name} declared as {prev} and as {k}")
    return out
