"""Fixtures for the integration tests: real `paxoi server` processes on 127.0.0.1.

- `cluster`: 3 servers (f=1) on free ports in tmp_path, started, with a leader elected;
  stopped in teardown whatever the test did (LocalCluster signals only its own PIDs).
- `make_cluster`: a factory for other shapes (`make_cluster(f=2, timing={...})`), not
  started; every cluster it made is stopped in teardown.
- `wait_until(condition, timeout, what)`: poll a condition against a deadline.

The helpers themselves live in `integration_helpers.py`, importable from test modules.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from integration_helpers import (  # noqa: E402
    make_local_cluster,
    stop_cluster,
    wait_until,
)

from paxoi.server.local import LocalCluster  # noqa: E402

MakeCluster = Callable[..., LocalCluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    made: list[LocalCluster] = []

    def make(f: int = 1, **config: Any) -> LocalCluster:
        cluster = make_local_cluster(tmp_path / f"cluster-{len(made)}", f, **config)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        errors = []
        for cluster in made:
            try:
                stop_cluster(cluster)
            except AssertionError as e:  # pragma: no cover - reported below
                errors.append(str(e))
        assert not errors, errors


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> LocalCluster:
    """A running 3-server cluster with a leader."""
    c = make_cluster()
    c.start()
    c.wait_leader(20)
    return c


@pytest.fixture
def wait() -> Callable[..., Any]:
    """`wait(condition, timeout, what)`: `integration_helpers.wait_until` as a fixture."""
    return wait_until
