"""``netgraph bench``: issue 12's table, measured (interleaved sides, min / median, load average)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark the audit (vs one read of the file, vs networkx, memory, start-up)",
        description="Generates random pruned MLPs (and, with --memory-gib, a multi-GiB safetensors file) in a "
                    "temporary folder, and measures every row of issue 12's table: the whole `netgraph audit` "
                    "vs one plain read (fresh processes), the audit in process vs the read, networkx (integer "
                    "node ids) vs netgraph, peak RSS of the auditing process, start-up, growth. Sides are "
                    "interleaved, each timed --repeats times; min and median are reported with the load "
                    "average. --before DIR runs the same on another source tree (the old code). Prints a "
                    "Markdown table; progress goes to stderr.")
    p.add_argument("--sizes", default="1e6,1e7", help="comma-separated MLP sizes: 1e6, 1e7, 1e8 (default 1e6,1e7)")
    p.add_argument("--rate", type=float, default=0.9, help="pruning rate (default 0.9)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per side, at least 5 (default 5)")
    p.add_argument("--before", metavar="DIR", help="source tree of the old code, e.g. from "
                   "`git archive f5ed470 | tar -x -C DIR` (default: no 'before' column)")
    p.add_argument("--networkx-size", default="1e7", help="size for the networkx row, or 'none' (default 1e7)")
    p.add_argument("--memory-gib", type=float, default=0.0,
                   help="also write a safetensors file of this many GiB and measure peak RSS (default: skip)")
    p.add_argument("--largest-mib", type=int, default=1024, help="largest tensor of that file in MiB (default 1024)")
    p.add_argument("--tmp", metavar="DIR", help="folder for the generated files (default: the system's temp folder)")
    p.add_argument("--trainer-rows", metavar="FILE", help="Markdown rows of the TC-step benchmark to append")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from netgraph.cli._bench import SIZES, format_markdown, run_bench
    from netgraph.errors import NetgraphError

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise NetgraphError(f"--sizes: unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    if not 0.0 <= args.rate < 1.0:
        raise NetgraphError(f"--rate must be in [0, 1), got {args.rate}")
    if args.repeats < 5:
        raise NetgraphError(f"--repeats must be at least 5 (min and median need them), got {args.repeats}")
    if args.before and not os.path.isdir(os.path.join(args.before, "netgraph")):
        raise NetgraphError(f"--before {args.before}: no netgraph package in that folder")
    nx_size = None if args.networkx_size == "none" else args.networkx_size
    rows = run_bench(sizes, repeats=args.repeats, rate=args.rate, before=args.before, networkx_size=nx_size,
                     memory_gib=args.memory_gib, largest_mib=args.largest_mib, tmp=args.tmp)
    trainer = None
    if args.trainer_rows and os.path.exists(args.trainer_rows):
        with open(args.trainer_rows) as fh:
            trainer = fh.read().strip()
    print(format_markdown(rows, trainer))
    return 0
