"""`make faults` and `make soak`: see tests/faults/suite.py."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.stack import Stack
from tests.faults.suite import FAULTS, run_suite, soak, table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=sorted(FAULTS), help="these faults only")
    parser.add_argument("--runs", type=int, default=1, help="consecutive runs of the suite")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="a soak of this length")
    parser.add_argument("--seed", type=int, default=0, help="the soak's choice of faults")
    parser.add_argument("--keep", type=Path, help="keep the logs and Redis files here")
    args = parser.parse_args(argv)
    names = args.only or list(FAULTS)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="faults-"))
    failed = False
    started = time.monotonic()
    for run in range(1, (1 if args.soak else args.runs) + 1):
        with Stack(workdir / f"run-{run}") as stack:
            stack.start()
            outcomes = soak(stack, args.soak, args.seed) if args.soak else run_suite(stack, names)
        print(f"\n== run {run} ({len(outcomes)} faults, logs in {stack.workdir})")
        print(table(outcomes))
        if args.soak:
            longest = max(outcomes, key=lambda o: o.recovery_s, default=None)
            print(
                f"\nsoak: {len(outcomes)} faults, {sum(o.orders for o in outcomes)} orders, "
                f"{sum(o.fills for o in outcomes)} fills; longest recovery "
                f"{longest.recovery_s if longest else 0:.1f} s ({longest and longest.fault})"
            )
        failed |= not all(o.ok for o in outcomes)
    print(f"\n{'FAILED' if failed else 'passed'} in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
