"""`paxoi cluster`: every server of a configuration as child processes, with a status view."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from paxoi.cli.common import config_from, fail


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help="run all servers of a cluster locally",
        description=(
            "Start every server of the configuration as a child process, show their status "
            "every few seconds, and stop them all on Ctrl-C. Without --config, --f F makes a "
            "local cluster of 2F+1 servers on 127.0.0.1."
        ),
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="cluster configuration (YAML)")
    parser.add_argument("--f", type=int, default=1, help="failures to tolerate (default 1)")
    parser.add_argument("--base-port", type=int, default=7000, help="first port (default 7000)")
    parser.add_argument("--data-dir", type=Path, help="where the generated cluster keeps its data")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between status views")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paxoi.cli.status import render
    from paxoi.server.config import local_config
    from paxoi.server.local import LocalCluster

    if args.config is not None:
        config = config_from(args, "cluster")
        workdir = config.storage.dir
        cluster = LocalCluster(config, workdir, config_path=args.config)
    else:
        if args.f < 0:
            fail("cluster", "--f must be 0 or more", 2)
        workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="paxoi-cluster-"))
        config = local_config(args.f, args.base_port, workdir / "data")
        cluster = LocalCluster(config, workdir)
        print(f"configuration: {cluster.config_path}")
    cluster.start()
    print(f"started {len(config.servers)} servers; logs in {cluster.log_dir}; Ctrl-C stops them")
    try:
        while True:
            time.sleep(args.interval)
            print(render(config), flush=True)
            print(flush=True)
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        cluster.stop()
    return 0
