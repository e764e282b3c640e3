#!/usr/bin/env bash
# The CS 380D master program for paxoi, as the course's tester runs it: from the
# repository root (COMMAND holds this script's path), commands on stdin, the chat logs
# on stdout, nothing else anywhere. See docs/cs380d.md.
#
# Which Python: $PAXOI_PYTHON if set; else the repository's .venv (the README's install
# command creates it); else python3. src/ goes first on PYTHONPATH either way, so this
# checkout's code runs even where paxoi was not installed (python3 then needs msgpack,
# PyYAML and pydantic). Extra arguments go to `paxoi master` (e.g. --log-dir DIR).
set -eu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -n "${PAXOI_PYTHON:-}" ]; then
    PYTHON="$PAXOI_PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PYTHON="$ROOT/.venv/bin/python"
else
    PYTHON=python3
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m paxoi master "$@"
