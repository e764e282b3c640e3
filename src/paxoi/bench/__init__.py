"""Benchmarks of a local paxoi cluster: `paxoi bench` (see `runner`).

- `stats`: the latency histogram and percentiles;
- `worker`: one load process (closed-loop clients on an asyncio loop);
- `load`: the driver's side of the load processes;
- `cluster`: the servers under test and their counters (syncs, CPU, RSS);
- `runner`: one run or a sweep, and the JSON document;
- `report`: the tables;
- `pso_node`: a PySyncObj replica for `bench/compare_pysyncobj.py`.
"""

from __future__ import annotations
