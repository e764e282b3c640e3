"""`python -m paxoi`: the same as the `paxoi` command."""

from __future__ import annotations

import sys

from paxoi.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
