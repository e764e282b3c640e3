"""Make `security_helpers` (this folder) and `integration_helpers` (tests/integration)
importable: pytest runs in importlib mode, which puts no test folder on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "integration"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
