"""Run CS 380D master tests the way the course's tester does, and time them.

The tester runs the command in the repository's COMMAND file from the repository root,
feeds a `.test` file on standard input without its trailing newline, closes it, kills
the master after 10 seconds, and passes the test when the output equals the `.sol` file
or, failing that, holds the same set of lines once each is stripped of white space.
`run_master` reproduces that; `PAXOI_PYTHON` points the wrapper at this interpreter, so
the code under test is this checkout's whatever virtualenv runs the tests.

As a script it runs tests repeatedly and reports pass counts and timings:

    python tests/harness/cs380d/cs380d_harness.py --runs 10 ../shared/external-tests/cs380d/tests/*.test
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
#: The official tests: the shared copy when this checkout sits next to it, else ours.
SHARED = REPO.parent / "shared" / "external-tests" / "cs380d"
OFFICIAL = SHARED if (SHARED / "tests").is_dir() else HERE / "official"
#: The course tester's limit per test.
TESTER_LIMIT = 10.0


@dataclass
class Run:
    stdout: str
    stderr: bytes
    elapsed: float
    returncode: int | None  # None: killed at the time limit


def command() -> list[str]:
    """The COMMAND file's one line, split as `$(cat COMMAND)` in a shell would split it."""
    return shlex.split((REPO / "COMMAND").read_text(encoding="utf-8"))


def run_master(
    test: str,
    limit: float = TESTER_LIMIT,
    log_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """Feed `test` (its trailing newline removed) to the master; kill it at `limit`.
    With `log_dir`, the master keeps its logs and data there."""
    env = dict(os.environ, PAXOI_PYTHON=sys.executable, **(extra_env or {}))
    env.pop("PAXOI_MASTER_LOG_DIR", None)
    if log_dir is not None:
        env["PAXOI_MASTER_LOG_DIR"] = str(log_dir)
    started = time.monotonic()
    proc = subprocess.Popen(
        command(),
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(test.rstrip("\n").encode("utf-8"), timeout=limit)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()  # its servers exit with it (they watch their parent), clients on EOF
        out, err = proc.communicate()
        code = None
    return Run(out.decode("utf-8", "replace"), err, time.monotonic() - started, code)


def accepted_by_tester(output: str, expected: str) -> bool:
    """The course tester's rule: identical, or the same set of white-space-stripped lines."""
    if output == expected:
        return True
    return {line.strip() for line in output.splitlines()} == {
        line.strip() for line in expected.splitlines()
    }


def expected_for(test: Path) -> Path:
    """The `.sol` of a `.test`: beside it, or in the `solutions` folder next to `tests`."""
    beside = test.with_suffix(".sol")
    if beside.exists():
        return beside
    return test.parent.parent / "solutions" / (test.stem + ".sol")


def main() -> int:
    parser = argparse.ArgumentParser(description="Run CS 380D master tests and time them.")
    parser.add_argument("tests", nargs="+", type=Path, help=".test files")
    parser.add_argument("--runs", type=int, default=10, help="runs of each test (default 10)")
    parser.add_argument("--keep-logs", type=Path, help="keep each run's logs under this folder")
    args = parser.parse_args()
    failures = 0
    for test in args.tests:
        expected = expected_for(test).read_text(encoding="utf-8")
        times: list[float] = []
        passed = 0
        for i in range(args.runs):
            log_dir = None if args.keep_logs is None else args.keep_logs / f"{test.stem}-{i}"
            run = run_master(test.read_text(encoding="utf-8"), log_dir=log_dir)
            ok = (
                run.returncode == 0
                and not run.stderr
                and run.elapsed < TESTER_LIMIT
                and accepted_by_tester(run.stdout, expected)
            )
            passed += ok
            times.append(run.elapsed)
            if not ok:
                print(f"  {test.stem} run {i}: FAILED in {run.elapsed:.2f} s", file=sys.stderr)
                print("  " + run.stdout.replace("\n", "\n  "), file=sys.stderr)
        failures += args.runs - passed
        print(
            f"{test.stem}: {passed}/{args.runs} passed; "
            f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
            f"max {max(times):.2f} s"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
