"""The snapshot limits of the server configuration: defaults, bounds, and the frame."""

from __future__ import annotations

import pytest

from paxoi.core.config import Limits
from paxoi.core.errors import ConfigError
from paxoi.server.config import FRAME_OVERHEAD, MAX_SNAPSHOT, parse_config

SERVERS = {0: {"port": 7000}}


def limits(**given: object) -> Limits:
    return parse_config({"servers": SERVERS, "limits": given}).cluster_config().limits


def test_defaults_reach_the_core() -> None:
    got = limits()
    want = Limits()
    assert (got.snapshot_every, got.log_keep, got.snapshot_chunk, got.max_snapshot) == (
        want.snapshot_every,
        want.log_keep,
        want.snapshot_chunk,
        want.max_snapshot,
    )


@pytest.mark.parametrize(
    "given,chunk",
    [
        ({"max_frame": 4096}, 4096 - FRAME_OVERHEAD),  # a small frame shrinks the default
        ({"max_frame": 1024}, 1024 - FRAME_OVERHEAD),
        ({"max_frame": 1 << 30}, Limits.snapshot_chunk),
        ({"snapshot_chunk": 2048, "max_frame": 4096}, 2048),
    ],
)
def test_snapshot_chunk_fits_the_frame(given: dict[str, int], chunk: int) -> None:
    assert limits(**given).snapshot_chunk == chunk


@pytest.mark.parametrize(
    "given,field",
    [
        ({"snapshot_chunk": 4096, "max_frame": 4096}, "snapshot_chunk"),  # no room left
        ({"snapshot_chunk": 32}, "snapshot_chunk"),
        ({"snapshot_chunk": 32 * 1024 * 1024}, "snapshot_chunk"),  # over a msgpack bin's cap
        ({"max_snapshot": MAX_SNAPSHOT + 1}, "max_snapshot"),  # over SQLite's value cap
        ({"max_snapshot": 2048, "snapshot_chunk": 4096}, "max_snapshot"),
        ({"snapshot_every": -1}, "snapshot_every"),
        ({"log_keep": -1}, "log_keep"),
        ({"snapshot_commands": 0}, "snapshot_commands"),
        ({"log_keep_commands": -1}, "log_keep_commands"),
    ],
)
def test_bad_snapshot_limits_are_refused_with_their_field(
    given: dict[str, int], field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_config({"servers": SERVERS, "limits": given})


def test_the_core_refuses_a_snapshot_every_zero_commands() -> None:
    """0 would snapshot after every applied slot; snapshots are turned off by
    snapshot_every 0 alone."""
    with pytest.raises(ConfigError, match="snapshot_commands"):
        Limits(snapshot_commands=0).validate()


def test_snapshots_can_be_turned_off() -> None:
    assert limits(snapshot_every=0, log_keep=0).snapshot_every == 0
