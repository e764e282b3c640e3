"""Reading an application's JSON snapshot: one versioned document, checked strictly.

A snapshot may come from a peer or from disk; `restore` must refuse anything else with
ValueError (and leave its state alone), so the checks live in one place.
"""

from __future__ import annotations

import json
from typing import Any


def load_versioned(data: bytes, version: int, what: str) -> dict[str, Any]:
    """The JSON object in `data`, whose "version" must be `version`; ValueError naming
    `what` ("a kv snapshot") otherwise."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not {what}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != version:
        raise ValueError(f"not {what}: missing or unknown version")
    return doc
