"""Start-up time of the CLI against importing Polars: whole processes, best of N.

Every small job pays the CLI's start-up, so ``riverbed version`` (and ``riverbed --help``)
should cost at most about 0.15 s more than ``python -c "import polars"``.

Usage::

    python -m benchmarks.startup            # best of 7
    python -m benchmarks.startup --runs 15
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

CASES = {
    'python -c "import polars"': [sys.executable, "-c", "import polars"],
    'python -c "import riverbed"': [sys.executable, "-c", "import riverbed"],
    "riverbed version": [sys.executable, "-m", "riverbed.cli", "version"],
    "riverbed --help": [sys.executable, "-m", "riverbed.cli", "--help"],
    'python -c "import riverbed as rb; rb.files"': [sys.executable, "-c", "import riverbed as rb; rb.files"],
}


def best_of(cmd: list[str], runs: int) -> float:
    """The shortest wall time of ``runs`` runs of ``cmd`` (seconds)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs per command (the best counts)")
    args = parser.parse_args(argv)
    times = {name: best_of(cmd, args.runs) for name, cmd in CASES.items()}
    base = times['python -c "import polars"']
    print(f"best of {args.runs} runs (wall seconds)")
    for name, t in times.items():
        print(f"  {name:<48} {t:6.3f} s  ({t - base:+.3f} s against importing Polars)")
    over = times["riverbed version"] - base
    print(f"riverbed version costs {over:+.3f} s over importing Polars (target: at most +0.150 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
