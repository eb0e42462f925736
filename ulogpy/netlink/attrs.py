"""Table-driven netlink attribute (TLV) walker.

Why table-driven: each netlink family is described once, declaratively, as a
`Table` (attribute type -> what to do with it), and one small loop decodes any
of them.  The walker flattens nested attributes into a single dict whose keys
are the names given in the tables, so a caller can name leaves directly with
its own output keys and avoid a second pass.

Why layouts: in CPython the cost is per attribute (~0.4 us here), and a
conntrack tuple alone is 7 attributes.  The kernel emits a given nest in a
fixed shape, so a nest entry may list the shapes it expects (`Layout`, built
from the same table): when a nest's bytes match one -- every header word
compared at once through an integer mask -- all its leaves come out of a
single `struct` call.  Anything else (other order, extra or missing
attributes) takes the generic loop, which gives the same result.

Error contract: the walker never raises anything but `MalformedMessage` for
bad input (length below 4, attribute running past its container, fixed-size
payload too short, address of the wrong size).  Its result never depends on
bytes outside ``[start, end)`` (a header straddling `end` is rejected whatever
it says).  Callers catch `MalformedMessage` and drop the message.

Attribute layout: u16 length (header included), u16 type, payload, padding to
a multiple of 4.  Both header fields are in host byte order; the type's two
top bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER) are masked off before lookup.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from ulogpy import fastpath
from ulogpy.core.codegen import define

NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = 0x3FFF
NLA_HDRLEN = 4

# Entry kinds.  Small ints so the walker's dispatch is a cheap comparison.
SCALAR = 0  # unpack a fixed-size number
NESTED = 1  # recurse into a sub-table, same output dict
BYTES = 2  # copy an exact-size payload (addresses)
NESTED_RAW = 3  # store the whole attribute (header included), then recurse
SKIP = 4  # known attribute, value not wanted (lets a layout cover it)

# An entry is (kind, output name, unpacker | sub-table | None, payload size, extra):
# extra is the struct format of a SCALAR, or the compiled layouts of a nest.
Entry = tuple[int, str, Any, int, Any]
Table = dict[int, Entry]
# A layout spec lists attribute types in the order the kernel sends them;
# (type, spec) is a nest.
LayoutSpec = Sequence[int | tuple[int, "LayoutSpec"]]
# Compiled: (header mask, expected header image, setter(out, buf, pos)).
Layout = tuple[int, int, Any]


class MalformedMessage(ValueError):
    """The bytes do not form a well-framed netlink message or attribute."""


def message_length(size: int, offset: int, length: int | None) -> int:
    """The length of the message at `offset` in a buffer of `size` bytes: `length`, or
    up to the end; `MalformedMessage` when that range is not inside the buffer."""
    if length is None:
        length = size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise MalformedMessage("range outside buffer")
    return length


_HDR = struct.Struct("=HH").unpack_from
_HDR_PACK = struct.Struct("=HH").pack_into
_HDR_BYTES = struct.Struct("=HH").pack


def attr(atype: int, payload: bytes) -> bytes:
    """One attribute as the kernel frames it: header, payload, padding to 4 bytes."""
    alen = NLA_HDRLEN + len(payload)
    return _HDR_BYTES(alen, atype) + payload + bytes(-alen % 4)


def _scalar(fmt: str) -> Any:
    st = struct.Struct(fmt)

    def make(name: str) -> Entry:
        return (SCALAR, name, st.unpack_from, st.size, fmt)

    return make


u8 = _scalar("B")
be16 = _scalar(">H")
be32 = _scalar(">I")
be64 = _scalar(">Q")
u16 = _scalar("=H")
u32 = _scalar("=I")


def raw_bytes(name: str, size: int) -> Entry:
    """Payload copied as bytes; its length must be exactly `size`."""
    return (BYTES, name, None, size, f"{size}s")


def skip(size: int) -> Entry:
    """An attribute with a `size`-byte payload that is recognised but not stored."""
    return (SKIP, "", None, size, f"{size}x")


def nested(table: Table, layouts: Sequence[LayoutSpec] = ()) -> Entry:
    """Recurse into `table`, writing into the same output dict."""
    return (NESTED, "", table, 0, compile_layouts(table, layouts))


def nested_raw(name: str, table: Table, layouts: Sequence[LayoutSpec] = ()) -> Entry:
    """Like `nested`, and also keep the attribute's raw bytes under `name`."""
    return (NESTED_RAW, name, table, 0, compile_layouts(table, layouts))


def _build(
    table: Table, spec: LayoutSpec, img: bytearray, mask: bytearray, fmt: list[str], names: list
) -> None:
    """Append `spec` to the byte image, header mask, struct format and names."""
    for item in spec:
        start = len(img)
        img.extend(bytes(NLA_HDRLEN))
        mask.extend(struct.pack("=HH", 0xFFFF, NLA_TYPE_MASK))
        fmt.append(f"{NLA_HDRLEN}x")
        if isinstance(item, tuple):
            atype, sub = item
            ent = table.get(atype)
            if ent is None or ent[0] != NESTED:
                raise ValueError(f"layout nest {atype} is not a plain nested entry")
            _build(ent[2], sub, img, mask, fmt, names)
            size = len(img) - start - NLA_HDRLEN
        else:
            atype = item
            ent = table.get(atype)
            if ent is None:
                raise ValueError(f"layout attribute {atype} has no table entry")
            kind, name, _, size, vfmt = ent
            if kind not in (SCALAR, BYTES, SKIP) or vfmt[0] in "=<":
                raise ValueError(f"layout attribute {atype} must be u8, big endian or bytes")
            pad = -size % 4
            img.extend(bytes(size + pad))
            mask.extend(bytes(size + pad))
            fmt.append(vfmt.lstrip(">") + (f"{pad}x" if pad else ""))
            if kind != SKIP:
                names.append(name)
        _HDR_PACK(img, start, NLA_HDRLEN + size, atype)


def compile_layouts(table: Table, specs: Sequence[LayoutSpec]) -> dict[int, tuple[Layout, ...]]:
    """Precompile fast-path layouts of a nest, keyed by payload length."""
    out: dict[int, tuple[Layout, ...]] = {}
    for spec in specs:
        img, mask, fmt, names = bytearray(), bytearray(), [], []
        _build(table, spec, img, mask, fmt, names)
        st = struct.Struct(">" + "".join(fmt))
        assert st.size == len(img)
        lay = (int.from_bytes(mask, "little"), int.from_bytes(img, "little"), _setter(st, names))
        out[len(img)] = (*out.get(len(img), ()), lay)
    return out


def _setter(st: struct.Struct, names: list[str]) -> Any:
    """Build ``setter(out, buf, pos)`` storing the unpacked leaves under `names`.

    Generated because one multiple assignment costs a third of
    ``out.update(zip(names, values))``, and this runs for every tuple.
    """
    if not names:
        return lambda out, buf, pos: None
    targets = ", ".join(f"out[{str(n)!r}]" for n in names)
    src = f"def setter(out, buf, pos):\n    {targets}, = _unpack(buf, pos)\n"
    return define(src, "setter", f"layout {' '.join(names)}", {"_unpack": st.unpack_from})


def walk(buf: bytes, start: int, end: int, table: Table, out: dict[str, Any]) -> None:
    """Decode the attributes in ``buf[start:end]`` into `out` following `table`.

    Precondition: ``0 <= start`` and ``end <= len(buf)``.  Unknown attribute
    types are skipped.  Pass `bytes` to get `bytes` values (slices of `buf` are
    stored as they are).  Raises `MalformedMessage` only.
    """
    # Hot path: literals stand for NLA_HDRLEN (4), NLA_TYPE_MASK and the kinds.
    hdr = _HDR
    get = table.get
    pos = start
    try:
        while pos < end:
            # A header straddling `end` fails the length test whatever it says;
            # one running off `buf` makes struct raise, caught below.
            alen, atype = hdr(buf, pos)
            nxt = pos + alen
            if alen < 4 or nxt > end:
                raise MalformedMessage(f"bad attribute length {alen} at {pos}")
            ent = get(atype & 0x3FFF)
            if ent is not None:
                kind, name, arg, size, extra = ent
                p4 = pos + 4
                if kind == 0:  # SCALAR
                    if alen - 4 < size:
                        raise MalformedMessage(f"attribute {name} too short")
                    out[name] = arg(buf, p4)[0]
                elif kind == 2:  # BYTES
                    if alen - 4 != size:
                        raise MalformedMessage(f"attribute {name} has length {alen - 4}")
                    out[name] = buf[p4:nxt]
                elif kind != 4:  # NESTED or NESTED_RAW (SKIP does nothing)
                    if kind == 3:
                        out[name] = buf[pos:nxt]
                    cands = extra.get(alen - 4)
                    if cands is not None:
                        img = int.from_bytes(buf[p4:nxt], "little")
                        for mask, expect, setter in cands:
                            if img & mask == expect:
                                setter(out, buf, p4)
                                break
                        else:
                            walk(buf, p4, nxt, arg, out)
                    else:
                        walk(buf, p4, nxt, arg, out)
            pos += (alen + 3) & ~3
    except struct.error:
        raise MalformedMessage(f"attribute header truncated at {pos}") from None


#: A validity rule applied after a walk: when the record's value of `key` is not in
#: `allowed`, the keys in `drop` are removed (ulogd's "valid only for" rules).
Rule = tuple[str, frozenset, tuple[str, ...]]


class Walker:
    """`walk` bound to a table, plus what a decoder does right after it (`split`).

    The pure twin of the compiled `ulogpy._fastpath.Walker`: same constructor, same
    results, same `MalformedMessage` errors.  `extras` are walker outputs that are
    not record keys, taken out (with their defaults) by `split`; `rules` are `Rule`s.
    """

    __slots__ = ("table", "extras", "rules")

    def __init__(self, table: Table, malformed: type = MalformedMessage,
                 extras: tuple[tuple[str, Any], ...] = (), rules: tuple[Rule, ...] = ()) -> None:
        self.table, self.extras, self.rules = table, extras, rules

    def __call__(self, buf: bytes, start: int, end: int, out: dict[str, Any]) -> None:
        walk(buf, start, end, self.table, out)

    def split(self, buf: bytes, start: int, end: int, out: dict[str, Any]) -> tuple:
        """Walk into `out`, take the extras out of it (in order), then apply the rules."""
        walk(buf, start, end, self.table, out)
        pop = out.pop
        got = tuple([pop(name, default) for name, default in self.extras])
        get = out.get
        for key, allowed, drop in self.rules:
            if get(key) not in allowed:
                for name in drop:
                    pop(name, None)
        return got


def table_walker(table: Table, compiled: bool = True, extras: tuple[tuple[str, Any], ...] = (),
                 rules: tuple[Rule, ...] = ()) -> Any:
    """A `Walker` of `table`: the compiled one of `ulogpy.fastpath` where it is built
    (and `compiled` is on), converted from `table` once here; else the Python one."""
    if compiled and fastpath.compiled is not None:
        return fastpath.compiled.Walker(table, MalformedMessage, extras, rules)
    return Walker(table, MalformedMessage, extras, rules)


def is_compiled(walker: Any) -> bool:
    """Whether `walker` (from `table_walker`) is the compiled one."""
    return fastpath.compiled is not None and isinstance(walker, fastpath.compiled.Walker)


class MessageShape(NamedTuple):
    """Where the values of one message layout are (see `message_shape`).

    `mask` / `image`: the attribute area as a little-endian integer, masked, must
    equal `image` for another message to have this shape.  `unpack(buf, start)`
    reads every value at once; `stores` lists, in walk order, (output name, index
    of its value in what `unpack` returns) or (output name, (start, end)) for a
    NESTED_RAW attribute's bytes, both relative to the area's start.
    """

    mask: int
    image: int
    unpack: Any
    stores: list[tuple[str, int | tuple[int, int]]]


def message_shape(buf: bytes, start: int, end: int, table: Table,
                  pin: frozenset[str] = frozenset()) -> MessageShape | None:
    """The shape of the (well-formed) attributes in ``buf[start:end]``.

    Why: `Layout` saves the per-attribute loop inside one nest; a whole message of
    one kind (a UDP flow's DESTROY, say) has the same attributes with the same
    lengths every time, so all of it can be matched and unpacked at once.  The
    shape pins every attribute header at every depth, and the payloads of the
    leaves named in `pin` (values the caller's validity rules depend on); any
    message that matches walks exactly like this one, so `walk` would store the
    same names from the same offsets.  None when the area cannot be described
    (a host-order number) or is malformed.
    """
    mask = bytearray(end - start)
    fmt = [">"]
    stores: list[tuple[str, int | tuple[int, int]]] = []
    cursor = 0  # bytes of the area covered by `fmt` so far
    values = 0

    def read(rel: int, code: str, size: int, name: str) -> None:
        nonlocal cursor, values
        if rel > cursor:
            fmt.append(f"{rel - cursor}x")
        fmt.append(code)
        cursor = rel + size
        stores.append((name, values))
        values += 1
        if name in pin:
            mask[rel:rel + size] = b"\xff" * size

    def visit(pos: int, stop: int, tab: Table) -> None:
        while pos < stop:
            if stop - pos < NLA_HDRLEN:
                raise MalformedMessage("attribute header truncated")
            alen, atype = _HDR(buf, pos)
            nxt = pos + alen
            if alen < NLA_HDRLEN or nxt > stop:
                raise MalformedMessage(f"bad attribute length {alen}")
            rel = pos - start
            mask[rel:rel + NLA_HDRLEN] = b"\xff" * NLA_HDRLEN
            ent = tab.get(atype & NLA_TYPE_MASK)
            if ent is not None:
                kind, name, sub, size, code = ent
                if kind == SCALAR:
                    if code[0] in "=<" or alen - NLA_HDRLEN < size:
                        raise ValueError(f"attribute {name} cannot be in a shape")
                    read(rel + NLA_HDRLEN, code.lstrip(">"), size, name)
                elif kind == BYTES:
                    if alen - NLA_HDRLEN != size:
                        raise MalformedMessage(f"attribute {name} has length {alen - 4}")
                    read(rel + NLA_HDRLEN, code, size, name)
                elif kind in (NESTED, NESTED_RAW):
                    if kind == NESTED_RAW:
                        stores.append((name, (rel, nxt - start)))
                    visit(pos + NLA_HDRLEN, nxt, sub)
            pos += (alen + 3) & ~3

    try:
        visit(start, end, table)
    except (MalformedMessage, ValueError, struct.error):
        return None
    unpack = struct.Struct("".join(fmt)).unpack_from
    mask_int = int.from_bytes(mask, "little")
    image = int.from_bytes(buf[start:end], "little") & mask_int
    return MessageShape(mask_int, image, unpack, stores)


def iter_attrs(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (type, flags, payload_start, payload_end) for each attribute.

    For callers that want to look at one level by hand instead of via a table.
    Raises `MalformedMessage` when the framing is broken (after yielding the
    attributes that came before the damage).
    """
    pos = start
    while pos < end:
        if end - pos < NLA_HDRLEN:
            raise MalformedMessage(f"attribute header truncated at {pos}")
        alen, atype = _HDR(buf, pos)
        nxt = pos + alen
        if alen < NLA_HDRLEN or nxt > end:
            raise MalformedMessage(f"bad attribute length {alen} at {pos}")
        yield atype & NLA_TYPE_MASK, atype & ~NLA_TYPE_MASK, pos + NLA_HDRLEN, nxt
        pos += (alen + 3) & ~3
