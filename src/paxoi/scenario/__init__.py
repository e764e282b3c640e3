"""Chat-service scenarios on real processes: the UMich test cases and more, judged.

- `named`: what a scenario is, the built-in ones (`NAMED`), and reading one from a file.
- `umich`: the UMich EECS 591 configuration format (f, x, num_failed_primary, ...).
- `runner`: starts the servers, runs batch clients, injects the faults, and judges the
  outcome with `paxoi.check`.
"""

from .named import NAMED, Scenario, ScenarioError, load_scenario
from .runner import Outcome, RunOptions, run_scenario

__all__ = [
    "NAMED",
    "Outcome",
    "RunOptions",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "run_scenario",
]
