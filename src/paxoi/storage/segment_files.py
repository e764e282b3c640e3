"""Snapshot segments as files of their own, beside the database.

Why not rows of a table, as before schema 7: SQLite writes a blob once to its WAL, one
frame per 4 KiB page with a checksum each, and again into the database at the
checkpoint, and the WAL fsync covers it. A chat of 1 KiB messages seals a 2 MB segment
every 2,048 of them, so every payload byte went through that on every node: at 8 x 128
with 1 KiB commands it cost each node about 4 us per command, a quarter of its CPU. A
file takes one write and one fsync.

The database stays the record of which segments exist (table `segment`: index, CRC,
length), changed in the same transaction as the snapshot that refers to them; a file is
written and synced *before* that transaction commits, and removed only *after* the one
that drops its row. So a crash leaves at worst a file no row names (an orphan, removed
when the storage is next loaded), never a row without its file, unless the disk lost it.

A file is named after its key, `<index>-<crc32 as 8 hex digits>.seg`, in directory
`segments/`; its content is the segment's bytes, nothing else (the CRC is in the name
and the row, checked when a snapshot is loaded). It is written as `<name>.tmp` and
renamed into place, because a segment may be written again under the name of one a
committed snapshot lists (when the storage does not know what is stored, it rewrites
rather than trust the disk), and a crash in the middle must not tear that one.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .segments import Key

#: The directory in a data directory that holds the segment files.
SEGMENTS_DIR = "segments"
#: A segment file's name, or that of one being written.
_NAME = re.compile(r"^(0|[1-9][0-9]*)-([0-9a-f]{8})\.seg(\.tmp)?$")


def segment_name(key: Key) -> str:
    idx, crc = key
    return f"{idx}-{crc:08x}.seg"


class SegmentFiles:
    """The segment files of one data directory. Not thread-safe: the storage engine
    calls it under its own lock."""

    def __init__(self, data_dir: Path, fsync: bool) -> None:
        self.path = data_dir / SEGMENTS_DIR
        self.fsync = fsync

    def write(self, segments: Iterable[tuple[Key, bytes]]) -> int:
        """Write each segment's file (atomically replacing one of the same name) and,
        when syncing, make them and their directory entries durable; the number written."""
        written = 0
        for key, data in segments:
            if not written:
                self._make_dir()
            path = self.path / segment_name(key)
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            written += 1
        if written and self.fsync:
            fsync_dir(self.path)
        return written

    def read(self, key: Key, length: int) -> bytes | str:
        """The segment's bytes, or why they cannot be had (missing, another length)."""
        try:
            with open(self.path / segment_name(key), "rb") as f:
                data = f.read(length + 1)
        except FileNotFoundError:
            return f"has no file {SEGMENTS_DIR}/{segment_name(key)}"
        if len(data) != length:
            return f"is {len(data)}{'+' if len(data) > length else ''} bytes on disk, not {length}"
        return data

    def remove(self, keys: Iterable[Key]) -> None:
        """Remove the files of `keys` (those that exist); not synced: a removal that a
        crash undoes leaves an orphan, removed at the next load."""
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / segment_name(key))

    def remove_orphans(self, known: Iterable[Key]) -> list[str]:
        """Remove the segment files whose key is not in `known`, and any left half
        written; their names. Files that are not named like segment files are left alone."""
        keep = {segment_name(key) for key in known}
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        removed = []
        for name in sorted(names):
            if name not in keep and _NAME.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / name)
                removed.append(name)
        return removed

    def _make_dir(self) -> None:
        if not self.path.is_dir():
            self.path.mkdir(exist_ok=True)
            if self.fsync:
                fsync_dir(self.path.parent)


def fsync_dir(path: Path) -> None:
    """Make a directory entry (a created or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
