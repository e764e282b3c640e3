"""The `paxoi` command line: one module per command group, assembled in `main`."""

from __future__ import annotations
