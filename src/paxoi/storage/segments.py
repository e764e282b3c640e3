"""Which snapshot segments a write must store, and which it may drop.

A stored segment is known by its index in the snapshot and its CRC: two at one index
may be on disk at once, the stored snapshot's (say, its tail) and a newer one sealed
since (`SegmentRecord`), which a later snapshot will refer to. A write stores what is
not on disk yet; a snapshot's write then drops what neither its frame nor the newest
segment at an index refers to. The rule lives here, apart from the SQL, so that it can
be tested alone and the engine stays about SQL.

Why compare objects first: a chat's sealed segments are the same bytes objects from one
snapshot to the next, so the very object last stored at an index is known stored without
computing its CRC; equal bytes (after a restart) cost a memcmp, still far less than a CRC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..core.records import SegmentRecord
from ..core.snapshot import Snapshot, crc32

#: A stored segment: (index, CRC32).
Key = tuple[int, int]


@dataclass
class SegmentIndex:
    """What is stored, as the engine last committed it."""

    #: Every stored segment, with its bytes (the very object written or loaded, shared
    #: with the state machine) or None if they were not read.
    stored: dict[Key, bytes | None] = field(default_factory=dict)
    #: Per index, the newest segment written or loaded there, and its CRC.
    latest: dict[int, tuple[bytes, int]] = field(default_factory=dict)

    @classmethod
    def of_keys(cls, keys: Iterable[Key]) -> SegmentIndex:
        """What is on disk when only the keys are known (bytes not read): every segment
        written from then on is written again, never trusted to be there already."""
        return cls({key: None for key in keys})


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """One write's segment work, and the index it leaves once committed."""

    #: Segments to store (key, bytes), in the order met.
    writes: list[tuple[Key, bytes]]
    #: Stored segments to delete (only when a snapshot is written).
    drops: list[Key]
    #: The written snapshot's segment CRCs, in order (None: no snapshot written).
    crcs: list[int] | None
    after: SegmentIndex


def plan_segments(index: SegmentIndex, steps: Sequence[SegmentRecord | Snapshot]) -> SegmentPlan:
    """The segment work of one write: `steps` are its segment records and the snapshot
    it writes (if any), in record order, which says which segment is newest where."""
    stored = index.stored
    latest = dict(index.latest)
    writes: dict[Key, bytes] = {}
    crcs: list[int] | None = None

    def place(i: int, data: bytes) -> int:
        known = latest.get(i)
        if known is not None and known[0] is data:
            return known[1]  # the object stored last at i: on disk, CRC known
        crc = crc32(data)
        key = (i, crc)
        if key not in writes:
            old = stored.get(key)
            if old is None or (old is not data and old != data):
                writes[key] = data
        latest[i] = (data, crc)
        return crc

    for step in steps:
        if isinstance(step, SegmentRecord):
            place(step.index, step.data)
        else:
            count = len(step.segments)
            # A state that shrank (a smaller snapshot installed): what lay past its end
            # is no segment's newest any more.
            for i in [i for i in latest if i >= count]:
                del latest[i]
            crcs = [place(i, s) for i, s in enumerate(step.segments)]

    after = dict(stored)
    after.update(writes)
    drops: list[Key] = []
    if crcs is not None:
        keep = {(i, crc) for i, crc in enumerate(crcs)}
        keep.update((i, crc) for i, (_, crc) in latest.items())
        drops = [key for key in after if key not in keep]
        for key in drops:
            del after[key]
    kept = [(key, data) for key, data in writes.items() if key in after]
    drops = [key for key in drops if key in stored]  # the rest were never written
    return SegmentPlan(kept, drops, crcs, SegmentIndex(after, latest))
