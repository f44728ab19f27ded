"""The long crash run: SIGKILL a stream job over the embedded log (into files, DuckDB,
SQLite, PostgreSQL and the log) at every named kill point and at random moments, restart it
each time, and compare every sink with an uninterrupted run.

Usage::

    python -m benchmarks.crash --kills 200 [--events 400000] [--pg postgresql://127.0.0.1:5432/test]

Prints the number of kills, restarts, and rows lost and duplicated per sink; exit status 0
when nothing was lost or duplicated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.recovery.harness import main_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crash", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs in all (every named point first)")
    parser.add_argument("--events", type=int, default=0, help="events in the log (default: 2,000 per kill)")
    parser.add_argument("--pg", default="", help="also write PostgreSQL at this URL")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    events = args.events or max(40_000, 2_000 * args.kills)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rb-crash-") as root:
        report = main_run(Path(root), events, args.kills, pg=args.pg, seed=args.seed)
    print(report.line())
    print(f"  named points hit: {', '.join(report.named_hit)}; missed: {report.named_missed or 'none'}")
    for sink, rows in report.rows.items():
        print(f"  {sink}: {rows} rows, lost {report.lost[sink]}, duplicated {report.duplicated[sink]}")
    print(f"  {time.monotonic() - started:.0f} s")
    bad = sum(report.lost.values()) + sum(report.duplicated.values()) + len(report.named_missed)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
