"""Hypothesis strategies for every value and message the wire codec carries.

Integers span msgpack's whole range ([-2**63, 2**64)) where the codec allows any int,
so the round-trip property covers the edges, not only the small numbers a simulation
produces. Fields the decoder requires to be non-negative (slots, node ids) are drawn
from [0, 2**64).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from paxoi.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    ClientReply,
    Decide,
    Heartbeat,
    LeaseGrant,
    Preempted,
    Prepare,
    Promise,
    ReadMode,
    ReadReply,
    ReplyStatus,
    SnapshotChunk,
    SnapshotRequest,
)
from paxoi.core.types import Ballot, Command, PValue, Role
from paxoi.wire.messages import (
    CONTROL_ACTIONS,
    ClientReplies,
    Control,
    ControlReply,
    ErrorReply,
    Hello,
    HelloAck,
    LogEntries,
    Read,
    StatusReply,
    StatusRequest,
    Submit,
    Submits,
    Subscribe,
)

MIN_INT = -(2**63)
MAX_INT = 2**64 - 1

any_ints = st.integers(MIN_INT, MAX_INT)
nats = st.one_of(st.integers(0, 1000), st.integers(0, MAX_INT))
node_ids = nats
slots = nats
opt_nodes = st.none() | node_ids
client_ids = st.text(max_size=24)
payloads = st.binary(max_size=64)

ballots = st.builds(Ballot, any_ints, any_ints)
commands = st.builds(Command, client_ids, any_ints, payloads)
batches = st.lists(commands, max_size=6).map(tuple)
pvalues = st.builds(PValue, ballots, slots, batches)


def _snapshot_chunk() -> st.SearchStrategy[SnapshotChunk]:
    """A chunk whose bytes lie inside the snapshot's size, as the decoder requires."""
    return st.builds(
        lambda src, slot, data, offset, extra: SnapshotChunk(
            src, slot, offset + len(data) + extra, offset, data
        ),
        node_ids,
        slots,
        st.binary(min_size=1, max_size=64),
        st.integers(0, 2**40),
        st.integers(0, 2**40),
    )


def _catchup_request() -> st.SearchStrategy[CatchupRequest]:
    return st.builds(
        lambda src, a, b: CatchupRequest(src, min(a, b), max(a, b)), node_ids, slots, slots
    )


def _submits() -> st.SearchStrategy[Submits]:
    """Two or more commands of one client (the wire carries its id once)."""
    return st.builds(
        lambda client, rest: Submits(client, tuple(Command(client, q, p) for q, p in rest)),
        client_ids,
        st.lists(st.tuples(st.integers(1, MAX_INT), payloads), min_size=2, max_size=5),
    )


_hello_server = st.builds(
    Hello,
    nats,
    st.text(max_size=16),
    st.just("server"),
    node_ids,
    st.none() | client_ids,
    st.just(0) | st.integers(1, 2**56),
)
_hello_client = st.builds(
    Hello, nats, st.text(max_size=16), st.just("client"), opt_nodes, client_ids
)
_extra_values: st.SearchStrategy[int | str] = st.one_of(any_ints, st.text(max_size=12))

#: One strategy per message type; tests check this covers every type the codec knows.
MESSAGE_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    Prepare: st.builds(Prepare, node_ids, ballots, slots),
    Promise: st.builds(
        Promise, node_ids, ballots, slots, st.lists(pvalues, max_size=4).map(tuple), slots
    ),
    Accept: st.builds(Accept, node_ids, ballots, slots, batches),
    Accepted: st.builds(Accepted, node_ids, ballots, slots),
    Preempted: st.builds(Preempted, node_ids, ballots, ballots),
    Decide: st.one_of(
        st.builds(Decide, node_ids, slots, batches, st.none() | ballots),
        st.builds(Decide, node_ids, slots, st.none(), ballots),
    ),
    Heartbeat: st.builds(Heartbeat, node_ids, ballots, slots, nats),
    LeaseGrant: st.builds(LeaseGrant, node_ids, ballots, nats),
    Read: st.builds(Read, nats, payloads, st.sampled_from(ReadMode)),
    ReadReply: st.builds(
        ReadReply, client_ids, nats, st.sampled_from(ReplyStatus), payloads, opt_nodes, slots
    ),
    CatchupRequest: _catchup_request(),
    CatchupReply: st.builds(
        CatchupReply, node_ids, st.lists(st.tuples(slots, batches), max_size=4).map(tuple)
    ),
    SnapshotChunk: _snapshot_chunk(),
    SnapshotRequest: st.builds(SnapshotRequest, node_ids, slots, nats),
    ClientReply: st.builds(
        ClientReply, client_ids, nats, st.sampled_from(ReplyStatus), payloads, opt_nodes
    ),
    Hello: _hello_server | _hello_client,
    HelloAck: st.builds(HelloAck, nats, st.text(max_size=16), node_ids, opt_nodes),
    ErrorReply: st.builds(ErrorReply, st.text(min_size=1, max_size=16), st.text(max_size=40)),
    Control: st.builds(
        Control,
        st.sampled_from(sorted(CONTROL_ACTIONS)),
        st.lists(nats, max_size=4).map(tuple),
        nats,
    ),
    ControlReply: st.builds(ControlReply, st.booleans(), st.text(max_size=40)),
    Submit: st.builds(Submit, st.builds(Command, client_ids, st.integers(1, MAX_INT), payloads)),
    Submits: _submits(),
    ClientReplies: st.builds(
        ClientReplies,
        client_ids,
        st.lists(st.tuples(nats, payloads), min_size=2, max_size=5).map(tuple),
    ),
    Subscribe: st.builds(Subscribe, slots),
    LogEntries: st.builds(
        LogEntries, st.lists(st.tuples(slots, commands, payloads), max_size=5).map(tuple)
    ),
    StatusRequest: st.just(StatusRequest()),
    StatusReply: st.builds(
        StatusReply,
        node_ids,
        st.lists(st.sampled_from([r.value for r in Role]), max_size=3).map(tuple),
        opt_nodes,
        st.none() | ballots,
        st.booleans(),
        slots,
        slots,
        st.dictionaries(st.text(max_size=12), _extra_values, max_size=4),
    ),
}

messages: st.SearchStrategy[Any] = st.one_of(*MESSAGE_STRATEGIES.values())

#: Leaves of arbitrary msgpack-able data, including the types the codec must refuse.
msgpack_leaves = st.one_of(
    st.none(),
    st.booleans(),
    any_ints,
    st.integers(-3, 30),  # small ints hit real tags and counts far more often
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=12),
)

#: Arbitrary msgpack-able trees (lists and maps of leaves), as a hostile peer might send.
msgpack_trees = st.recursive(
    msgpack_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), children, max_size=4),
    ),
    max_leaves=30,
)
