"""paxoi.abcast: Multi-Paxos atomic broadcast over IP multicast, one process per role.

The adapter for the USI "paxos-tests" harness: `paxoi abcast ROLE ID CONF` runs a
proposer, acceptor, learner or client of the same core that the chat servers use.
"""
