"""MARK: let through only events whose mark matches, e.g. to split packets between stacks.

The test is ulogd's: `(mark & mask) == mark_option` on `ct.mark` when the event has
one, else on `oob.mark`, else the event passes.  The option `mark` itself is not
masked, so `mark=0x10 mask=0x0f` never matches.  Both options are C ints in ulogd
(`mask=0xffffffff` reads back as -1); only their 32 bits matter.
"""

from __future__ import annotations

from ulogpy.core.keys import U32, keys
from ulogpy.core.plugin import DataType, FilterPlugin, Option


class MARK(FilterPlugin):
    name = "MARK"
    description = "Drop events whose conntrack or packet mark does not match"
    input_type = DataType.PACKET | DataType.FLOW
    output_type = DataType.PACKET | DataType.FLOW
    options = (
        Option("mark", int, 0, help="value the masked mark must equal"),
        Option("mask", int, 0xFFFFFFFF, help="bits of the mark that are compared"),
    )
    input_keys = keys(("ct.mark", U32, True), ("oob.mark", U32, True))

    def configure(self) -> None:
        self.mark = self.config.mark & 0xFFFFFFFF
        self.mask = self.config.mask & 0xFFFFFFFF

    def interp(self, record: dict) -> bool | None:
        value = record.get("ct.mark")
        if value is None:
            value = record.get("oob.mark")
            if value is None:
                return None
        if value & self.mask != self.mark:
            return False
        return None
