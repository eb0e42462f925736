"""The learnt-shape cache both message decoders share.

A decoder walks the attribute table for a message it has not seen the layout of,
then compiles a filler for that layout (a "shape") so that the next message of the
same layout is decoded in one step.  Odd traffic must not cost forever: a cache
tries at most four times `MAX_SHAPES` messages and keeps at most `MAX_SHAPES`.
Each owner (an NFCT or NFLOG instance, a test, a tool) keeps its own cache.
"""

from __future__ import annotations

from typing import Any

#: Shapes a cache keeps at most (it tries four times as many messages at most).
MAX_SHAPES = 64


class ShapeCache:
    """Shapes by key, and what is left of the learning budget."""

    __slots__ = ("shapes", "attempts", "room")

    def __init__(self, learn: bool = True) -> None:
        self.shapes: dict[Any, list[tuple]] = {}
        #: Learning attempts left, and shapes left.
        self.attempts = self.room = 0
        self.reset(learn)

    def reset(self, learn: bool = True) -> None:
        """Forget the learnt shapes; without `learn`, only the generic walker decodes."""
        self.shapes.clear()
        self.attempts, self.room = (4 * MAX_SHAPES, MAX_SHAPES) if learn else (0, 0)

    def keep(self, key: Any, entry: tuple, identity: int) -> None:
        """Add `entry` under `key` unless its first `identity` fields are known already
        (the caller has spent one attempt compiling it)."""
        known = self.shapes.setdefault(key, [])
        if all(have[:identity] != entry[:identity] for have in known):
            known.append(entry)
            self.room -= 1
            if self.room <= 0:
                self.attempts = 0
