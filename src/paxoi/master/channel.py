"""The master's end of a client process: JSON lines over the child's stdin and stdout.

Every request carries an id and every answer repeats it, so an answer that arrives after
its request timed out (a client still starting, a stalled machine) is recognised as
stale and dropped instead of being taken for the answer to the next question. Reads use
`select` with a deadline: the master is single-threaded and must never hang on a child.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("paxoi.master")


class ClientProcess:
    """One `paxoi master-client` child, known by PID; only it is ever signalled."""

    def __init__(self, index: int, command: list[str], log_path: Path) -> None:
        self.index = index
        with open(log_path, "ab") as logfile:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logfile,
                start_new_session=True,  # a Ctrl-C in a terminal reaches the master only
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = bytearray()
        self._ids = itertools.count(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def post(self, request: dict[str, Any]) -> int | None:
        """Send one request; its id, or None if the client is gone."""
        rid = next(self._ids)
        data = json.dumps({"id": rid, **request}).encode("ascii") + b"\n"
        try:
            self._stdin.write(data)
            self._stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            log.error("client %d: cannot send a request: %s", self.index, e)
            return None
        return rid

    def await_answer(self, rid: int, deadline: float) -> dict[str, Any] | None:
        """The answer to request `rid`, or None at the deadline or if the client died."""
        while True:
            line = self._readline(deadline)
            if line is None:
                return None
            try:
                answer = json.loads(line)
            except ValueError:
                log.error("client %d: not an answer: %r", self.index, line[:200])
                continue
            if not isinstance(answer, dict):
                continue
            if answer.get("id") == rid:
                return answer
            log.info(
                "client %d: dropped a stale answer to request %s", self.index, answer.get("id")
            )

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        rid = self.post(request)
        return None if rid is None else self.await_answer(rid, time.monotonic() + timeout)

    def _readline(self, deadline: float) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                return None
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:  # the client exited
                return None
            self._buffer += chunk

    def close_input(self) -> None:
        """End of requests: the client stops on its own when it reads EOF."""
        with contextlib.suppress(OSError, ValueError):
            self._stdin.close()

    def stop(self, deadline: float) -> None:
        """Wait for the client to exit until `deadline`, then SIGKILL it (by PID). A
        client should exit by itself at end of input; one that does not is first asked
        (SIGUSR1, see `paxoi master-client`) to write its threads' stacks to its log."""
        self.close_input()
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("client %d (pid %d) did not exit; killing it", self.index, self.pid)
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]


__all__ = ["ClientProcess"]
