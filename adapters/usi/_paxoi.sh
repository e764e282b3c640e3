# Sourced by the role scripts: find a Python that has paxoi, and run its atomic broadcast
# (`python -m paxoi.abcast`, the lean entry point: role processes start fast).
# Order: $PAXOI_PYTHON; the repository's .venv (when this folder is used in place or
# through a symbolic link); the python of an installed `paxoi` command; python3 with the
# repository's src on the path.
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(cd "$here/../.." 2>/dev/null && pwd -P)"
run_paxoi() {
    if [ -n "${PAXOI_PYTHON:-}" ]; then
        exec "$PAXOI_PYTHON" -m paxoi.abcast "$@"
    elif [ -x "$repo/.venv/bin/python" ]; then
        exec "$repo/.venv/bin/python" -m paxoi.abcast "$@"
    elif command -v paxoi >/dev/null 2>&1; then
        exec "$(dirname "$(command -v paxoi)")/python" -m paxoi.abcast "$@"
    else
        PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m paxoi.abcast "$@"
    fi
}
