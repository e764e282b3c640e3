"""Coverage-guided fuzzing of the configuration loader (paxoi.server.config.load_config).

    python fuzz/fuzz_config.py fuzz/corpus/config -dict=fuzz/config.dict \
        -max_total_time=600 -rss_limit_mb=512

Each input is written as a YAML file (in /dev/shm when it exists) and loaded: the result
must be a configuration or ConfigError, nothing else. An accepted configuration must
survive dump_config and parsing again unchanged. See fuzz/README.md.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import yaml

    from paxoi.core.errors import ConfigError
    from paxoi.server.config import dump_config, load_config, parse_config

_DIR = Path(
    tempfile.mkdtemp(prefix="paxoi-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
)
_FILE = _DIR / "cluster.yaml"
atexit.register(shutil.rmtree, _DIR, True)


def test_one_input(data: bytes) -> None:
    _FILE.write_bytes(data)
    try:
        config = load_config(_FILE)
    except ConfigError:
        return
    again = parse_config(yaml.safe_load(dump_config(config)))
    if again != config:
        raise AssertionError("an accepted configuration does not survive a dump and a parse")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
