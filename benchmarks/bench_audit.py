"""Audit benchmark: `python benchmarks/bench_audit.py` (same as `netgraph bench`)."""

import sys

from netgraph.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
