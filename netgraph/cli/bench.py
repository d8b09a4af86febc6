"""``netgraph bench``: time the audit against networkx and against reading the file once."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the audit (vs networkx, vs reading the file)",
                       description="Magnitude-prunes random MLPs of about 1e6 and 1e7 parameters, saves them, "
                                   "and times reading, auditing, and a networkx implementation of the same audit "
                                   "(medians; ratios within the run). Prints a Markdown table.")
    p.add_argument("--sizes", default="1e6,1e7", help="comma-separated: 1e6, 1e7 (default both)")
    p.add_argument("--rate", type=float, default=0.9, help="pruning rate (default 0.9)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-networkx", action="store_true", help="skip the (slow) networkx baseline")
    p.set_defaults(func=run)


def run(args) -> int:
    from netgraph.cli._bench import SIZES, format_markdown, run_audit_benchmark
    from netgraph.errors import NetgraphError

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise NetgraphError(f"--sizes: unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    if not 0.0 <= args.rate < 1.0:
        raise NetgraphError(f"--rate must be in [0, 1), got {args.rate}")
    rows = run_audit_benchmark(sizes, rate=args.rate, repeats=args.repeats, networkx=not args.no_networkx)
    print(format_markdown(rows))
    return 0
