"""Snapshot segments as files of their own, beside the database.

Why not rows of a table, as before schema 7: SQLite writes a blob once to its WAL, one
frame per 4 KiB page with a checksum each, and again into the database at the
checkpoint, and the WAL fsync covers it. A chat of 1 KiB messages seals a 2 MB segment
every 2,048 of them, so every payload byte went through that on every node: at 8 x 128
with 1 KiB commands it cost each node about 4 us per command, a quarter of its CPU. A
file takes one write and one fsync.

The database stays the record of which segments exist (table `segment`: index, CRC,
length), changed in the same transaction as the snapshot that refers to them; a file is
written *before* that transaction commits, and removed only *after* the one that drops
its row. So a crash leaves at worst a file no row names (an orphan, removed when the
storage is next loaded).

When a file is synced: in any case before the transaction of a snapshot that lists it
commits. A segment that seals goes to storage ahead of any snapshot (a head start, which
the replay of the log seals again if it is lost, see SqliteStorage.load), so its file is
synced *behind*, by a thread of its own, rather than on the group-commit thread where
every promise and accept would wait for it: a chat of 16-byte messages seals a segment
every 2,048 of them, and an fsync (and a directory fsync) per segment on that thread cost
the leader 5-10% of its throughput at 8 x 64. Syncing them all at the snapshot instead
stalled it for 250 ms at 1 KiB (100 MB of segments a period). The snapshot syncs what
the thread has not reached yet. A sync that fails is not retried (after a failed fsync
the kernel may have dropped the pages, and a second fsync would succeed on nothing): the
next snapshot that lists the file fails its write instead, and the node restarts from
what is on disk. Files found at load that no snapshot lists count as not synced.

A file is named after its key, `<index>-<crc32 as 8 hex digits>.seg`, in directory
`segments/`; its content is the segment's bytes, nothing else (the CRC is in the name
and the row, checked when a snapshot is loaded). It is written as `<name>.tmp` and
renamed into place, because a segment may be written again under the name of one a
committed snapshot lists (when the storage does not know what is stored, it rewrites
rather than trust the disk), and a crash in the middle must not tear that one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from .segments import Key

log = logging.getLogger("paxoi.storage")

#: The directory in a data directory that holds the segment files.
SEGMENTS_DIR = "segments"
#: A segment file's name, or that of one being written.
_NAME = re.compile(r"^(0|[1-9][0-9]*)-([0-9a-f]{8})\.seg(\.tmp)?$")


def segment_name(key: Key) -> str:
    idx, crc = key
    return f"{idx}-{crc:08x}.seg"


class SegmentFiles:
    """The segment files of one data directory. The storage engine calls it under its
    own lock; only the set of files not synced yet is shared with the syncing thread."""

    def __init__(self, data_dir: Path, fsync: bool, behind: bool = True) -> None:
        """`behind`: sync the files of sealed segments in a thread as they come (else
        only when a snapshot lists them)."""
        self.path = data_dir / SEGMENTS_DIR
        self.fsync = fsync
        self._behind = behind and fsync
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)
        #: Files written (or found at load) and not synced since.
        self._unsynced: set[Key] = set()
        #: ... and why syncing those it failed on failed.
        self._failed: dict[Key, OSError] = {}
        #: What the thread is to sync, in order written.
        self._queue: deque[Key] = deque()
        #: Writes so far: a file the thread synced counts as synced only if it was not
        #: written again meanwhile (dropped and sealed anew under the same name).
        self._writes = 0
        self._written_at: dict[Key, int] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def unsynced(self) -> set[Key]:
        with self._mutex:
            return set(self._unsynced)

    def found(self, keys: Iterable[Key]) -> None:
        """Files on disk at load that no stored snapshot lists: perhaps never synced."""
        with self._mutex:
            self._unsynced.update(keys)

    def write(self, segments: Iterable[tuple[Key, bytes]], sync: bool) -> int:
        """Write each segment's file, atomically replacing one of the same name; with
        `sync`, make them and their directory entries durable now. The number written."""
        written: list[Key] = []
        for key, data in segments:
            if not written:
                self._make_dir()
            path = self.path / segment_name(key)
            # A file a stored snapshot may list is never replaced by one not synced.
            now = self.fsync and (sync or path.exists())
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if now:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            with self._mutex:
                self._failed.pop(key, None)
                self._writes += 1
                self._written_at[key] = self._writes
                if now or not self.fsync:
                    self._unsynced.discard(key)
                else:
                    self._unsynced.add(key)
                    if self._behind:
                        self._queue.append(key)
                        self._wake.notify()
            written.append(key)
        if written and sync and self.fsync:
            fsync_path(self.path)
        if self._behind and self._thread is None and self._queue:
            self._thread = threading.Thread(
                target=self._sync_behind, name="paxoi-segment-sync", daemon=True
            )
            self._thread.start()
        return len(written)

    def sync(self, keys: Iterable[Key]) -> None:
        """Make the files of `keys` durable, with their directory entries; OSError if
        one of them could not be synced before."""
        with self._mutex:
            keys = [key for key in keys if key in self._unsynced]
            failed = next((self._failed[key] for key in keys if key in self._failed), None)
        if failed is not None:
            raise failed
        for key in keys:
            fsync_path(self.path / segment_name(key))
        if keys:
            fsync_path(self.path)
            with self._mutex:
                self._unsynced.difference_update(keys)

    def close(self) -> None:
        """Stop the syncing thread (what it has not synced stays for the next load)."""
        with self._mutex:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _sync_behind(self) -> None:
        while True:
            with self._mutex:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                batch = [(key, self._written_at.get(key)) for key in self._queue]
                self._queue.clear()
            done: list[tuple[Key, int | None]] = []
            for key, at in batch:
                try:
                    fsync_path(self.path / segment_name(key))
                except FileNotFoundError:
                    continue  # dropped (or replaced, and then synced) since
                except OSError as e:
                    log.warning("%s: could not sync %s: %s", self.path, segment_name(key), e)
                    with self._mutex:
                        self._failed[key] = e
                    continue
                done.append((key, at))
            try:
                if done:
                    fsync_path(self.path)
            except OSError as e:
                log.warning("%s: could not sync the directory: %s", self.path, e)
                continue  # they stay unsynced: the snapshot that lists them syncs them
            with self._mutex:
                self._unsynced.difference_update(
                    key for key, at in done if self._written_at.get(key) == at
                )

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
            with self._mutex:
                self._unsynced.discard(key)
                self._failed.pop(key, None)
                self._written_at.pop(key, None)
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
                fsync_path(self.path.parent)


def fsync_path(path: Path) -> None:
    """Make a file's data, or a directory's entries (files created or renamed in it),
    durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
