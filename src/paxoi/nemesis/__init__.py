"""`paxoi nemesis`: a key-value workload on real processes under injected faults, checked
for linearizability and for lost writes (see docs/reliability.md).

- `schedule`: the seeded fault schedule (kinds, variants, the liveness budget);
- `faults`: the nemesis that carries a schedule out on a `LocalCluster`, then heals;
- `workload`: the clients and their operations, recorded in a history;
- `lost`: the final value of each key against every acknowledged write;
- `run`: one run from start to verdict.
"""

from .lost import LostReport, check_lost
from .run import NemesisOptions, NemesisReport, run_nemesis
from .schedule import (
    KINDS,
    VARIANTS,
    FaultSet,
    FaultSpec,
    ScheduleError,
    generate_schedule,
    max_units,
    parse_faults,
)

__all__ = [
    "KINDS",
    "VARIANTS",
    "FaultSet",
    "FaultSpec",
    "LostReport",
    "NemesisOptions",
    "NemesisReport",
    "ScheduleError",
    "check_lost",
    "generate_schedule",
    "max_units",
    "parse_faults",
    "run_nemesis",
]
