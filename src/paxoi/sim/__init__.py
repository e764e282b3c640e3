"""paxoi.sim: a deterministic simulator that runs the real core under seeded faults.

One seed fixes everything: the cluster's timings, the network's losses and delays,
the disks' latencies, which nodes crash when, what the clients send. So a seed that
finds a violation reproduces it exactly, every time.
"""

from .checker import Violation
from .cluster import SimParams, Simulation

__all__ = ["SimParams", "Simulation", "Violation"]
