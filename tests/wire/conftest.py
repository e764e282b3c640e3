"""Make the hypothesis strategies of tests/wire importable as `wire_strategies`.

pytest runs in importlib mode (see pyproject.toml), which does not put test folders on
sys.path; the module has a name unique to this folder so it cannot clash with the
helpers of other test folders.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
