"""The delivery model: how every output's records reach their destination.

`buffer` (memory, then the on-disk `spool`), `writer` (batching, retries,
reconnects, counters: in a thread, or in the event loop for a non-blocking
transport) and `options` (the one option set of every output).  `attach`
builds the buffer and writer of one output.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from ulogpy.core.keys import KeyType
from ulogpy.core.plugin import OutputPlugin
from ulogpy.daemon.ownlog import NOTICE
from ulogpy.delivery.buffer import Buffer
from ulogpy.delivery.spool import Spool, decode_record, decode_text, encode_record, encode_text
from ulogpy.delivery.writer import LoopWriter, ThreadWriter, Writer

log = logging.getLogger("ulogpy.delivery")


def _spool_of(output: OutputPlugin) -> Spool | None:
    """The output's spool (queue_policy=spool), opened; None if it cannot be."""
    cfg = output.config
    if output.renders_text:
        encode, decode = encode_text, decode_text
    else:  # only values worth keeping: RAW keys are pointers into a kernel message
        keys = output.stack_keys if output.wildcard_input else output.input_keys
        wanted = frozenset(k.name for k in keys if k.type not in (KeyType.RAW, KeyType.NONE))
        encode, decode = functools.partial(encode_record, keys=wanted), decode_record
    spool = Spool(os.path.join(cfg.spool_dir, output.id), cfg.spool_max_mb << 20, encode,
                  decode=decode)
    try:
        left = spool.open()
    except OSError as exc:
        log.error("%s: no spool (%s): records beyond memory will be dropped", output, exc)
        return None
    if left:
        log.log(NOTICE, "%s: %d records left in %s by an earlier run, writing them first",
                output, left, spool.dir)
    return spool


def attach(output: OutputPlugin, loop: Any) -> Writer:
    """The buffer and writer of `output` (not started)."""
    cfg = output.config
    spool = _spool_of(output) if cfg.queue_policy == "spool" else None
    buffer = Buffer(cfg.queue_size, cfg.queue_policy, spool, output.counters, str(output))
    batch_max, delay = output.batching()
    tuning = {"batch_max": batch_max, "delay": delay, "backoff": output.backoff(),
              "stop_timeout": output.stop_timeout()}
    if output.transport.nonblocking:
        return LoopWriter(output, buffer, loop, **tuning)
    return ThreadWriter(output, buffer, **tuning)
