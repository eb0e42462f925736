"""IFINDEX: interface indexes (`oob.ifindex_in/out`) to names (`oob.in`, `oob.out`).

Both outputs are always set: index 0 or no index gives "" (as ulogd).  Names come from
the process-wide rtnetlink cache (`ulogpy.plugins.filter.ifnames`), so a look-up is one dict `get`.

Fixed (spec 8.3 B8): for an index the kernel does not know, ulogd repeats the previous
packet's name.  ulogpy reads the pending link notifications (and, at most once a
second, reloads the table); if the index is still unknown the name is "" and the
packet is counted as `unknown_ifindex`.
"""

from __future__ import annotations

from ulogpy.plugins.filter import ifnames

from ulogpy.core.keys import STRING, U32, keys
from ulogpy.core.loopapi import LoopAPI
from ulogpy.core.plugin import DataType, FilterPlugin, PluginError, counters


class IFINDEX(FilterPlugin):
    name = "IFINDEX"
    description = "Name the input and output interfaces of a packet"
    counter_table = counters(
        ("unknown_ifindex", False, "interface indexes with no name"),
    )
    input_type = DataType.PACKET | DataType.FLOW
    output_type = DataType.PACKET | DataType.FLOW
    input_keys = keys(("oob.ifindex_in", U32), ("oob.ifindex_out", U32))
    output_keys = keys(("oob.in", STRING), ("oob.out", STRING))

    def configure(self) -> None:
        #: The cache; a fresh empty one until `start` (tests may set their own).
        self.cache = ifnames.InterfaceNames()
        self._shared = False

    def start(self, loop: LoopAPI) -> None:
        try:
            self.cache = ifnames.acquire(loop)
        except OSError as exc:
            raise PluginError(f"cannot read the interface table (rtnetlink): {exc}") from None
        self._shared = True

    def stop(self) -> None:
        if self._shared:
            ifnames.release(self.cache)
            self._shared = False

    def interp(self, record: dict) -> bool | None:
        names = self.cache.names
        get = record.get
        index = get("oob.ifindex_in", 0)
        name = names.get(index)
        record["oob.in"] = name if name is not None else self._unknown(index)
        index = get("oob.ifindex_out", 0)
        name = names.get(index)
        record["oob.out"] = name if name is not None else self._unknown(index)
        return None

    def _unknown(self, index: int) -> str:
        name = self.cache.resolve(index)
        if name is None:
            self.counters.add("unknown_ifindex")
            return ""
        return name
