"""`netgraph plot`: draw a checkpoint's masks, its connectivity, or an ablation's curves.

    netgraph plot masks CKPT [--layer NAME] [--crop r0,r1,c0,c1] [--show-constant] -o OUT
    netgraph plot connectivity CKPT [--style auto|layered|bars] -o OUT
    netgraph plot receptive CKPT [--group NAME] [--input-shape 8x8] -o OUT
    netgraph plot ablation RESULTS.json [--dataset NAME] -o OUT

The format (PNG, SVG, PDF) comes from OUT's extension; the file is written atomically.
The written path is printed on stdout.  Bad input (unknown layer, bad crop, unknown
extension, unreadable checkpoint) is a one-line error and exit status 2, with no file
written.  This module imports only argparse at load time; ``run`` imports viz.
"""

from __future__ import annotations

import argparse

_EPILOG = "OUT's extension picks the format: .png, .svg or .pdf."


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="draw masks, connectivity or ablation curves to PNG/SVG/PDF",
        description="Draw a checkpoint's masks (dead weights marked), its connectivity, the "
                    "receptive sets of its outputs, or an ablation's curves.",
        epilog=_EPILOG,
    )
    kinds = p.add_subparsers(dest="plot_kind", metavar="KIND")
    kinds.required = True

    m = kinds.add_parser("masks", help="mask tensors as binary images (kept dark, pruned light, dead marked)",
                         epilog=_EPILOG)
    m.add_argument("checkpoint", metavar="CKPT", help="state_dict file (.pt/.pth/.bin/.safetensors)")
    m.add_argument("--layer", metavar="NAME",
                   help="one weight (fc1.weight), or several ('a,b' or a glob like 'heads.*.weight') drawn "
                        "as diagonal blocks, one per head; default: every prunable layer, one panel each")
    m.add_argument("--crop", metavar="R0,R1,C0,C1",
                   help="rows R0:R1 and columns C0:C1 of the unfolded mask (needs --layer with several layers)")
    m.add_argument("--show-constant", action="store_true",
                   help="draw constant weights (dead, fed by a bias) in their own colour")
    _output(m)

    c = kinds.add_parser("connectivity", help="layered drawing when small, per-layer bars otherwise",
                         epilog=_EPILOG)
    c.add_argument("checkpoint", metavar="CKPT")
    c.add_argument("--style", choices=("auto", "layered", "bars"), default="auto",
                   help="auto (default): layered drawing up to --max-units units, bars beyond")
    c.add_argument("--max-units", type=int, default=160, metavar="N",
                   help="largest network (units) drawn unit by unit in auto style (default 160)")
    _output(c)

    r = kinds.add_parser("receptive", help="which inputs reach each unit (S_a), as an image", epilog=_EPILOG)
    r.add_argument("checkpoint", metavar="CKPT")
    r.add_argument("--group", metavar="NAME", help="the group whose units are shown (default: the output)")
    r.add_argument("--input-shape", metavar="HxW", help="draw each unit's set reshaped, e.g. 8x8 or 28x28")
    _output(r)

    a = kinds.add_parser("ablation", help="%% effective and accuracy vs rate, one line per method",
                         epilog=_EPILOG)
    a.add_argument("results", metavar="RESULTS.json", help="the JSON written by `netgraph ablate`")
    a.add_argument("--dataset", metavar="NAME", help="only this dataset's rows (default: a row of panels each)")
    _output(a)
    p.set_defaults(func=run)


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="image file: .png, .svg or .pdf")


def _ints(text: str, n: int | None, sep: str, what: str, example: str) -> tuple[int, ...]:
    from viz import BadPlotInput

    parts = text.replace(" ", "").split(sep)
    try:
        values = tuple(int(v) for v in parts)
    except ValueError:
        values = ()
    if not values or (n is not None and len(values) != n):
        raise BadPlotInput(f"{what} must be {example}, got {text!r}")
    return values


def run(args) -> int:
    import viz

    viz.figure_format(args.output)  # refuse an unknown extension before any work
    kind = args.plot_kind
    if kind == "ablation":
        fig = viz.plot_ablation(viz.load_ablation(args.results), dataset=args.dataset)
    else:
        from netgraph import reachability

        graph, masks, source = viz.read_checkpoint(args.checkpoint)
        reach = reachability(graph)
        if kind == "masks":
            fig = _masks(viz, args, graph, masks, reach, source)
        elif kind == "connectivity":
            from netgraph import audit

            if args.style == "layered" or (args.style == "auto" and viz.is_small(graph, max_units=args.max_units)):
                fig = viz.plot_network(graph, reach, title=f"connectivity of {source}")
            else:
                fig = viz.plot_audit(audit(graph, reach, source=source), graph, reach)
        else:  # receptive
            shape = None
            if args.input_shape:
                shape = _ints(args.input_shape, None, "x", "--input-shape", "sizes joined by x, like 8x8")
            fig = viz.plot_receptive_sets(graph, args.group, input_shape=shape)
    viz.save_figure(fig, args.output)
    print(args.output)
    return 0


def _masks(viz, args, graph, masks, reach, source):
    views = {name: viz.mask_view(masks[name], graph, name, reach=reach)
             for name in (b.name for b in graph.weighted_blocks) if name in masks}
    crop = _ints(args.crop, 4, ",", "--crop", "four comma-separated integers r0,r1,c0,c1") if args.crop else None
    layer = args.layer
    if layer is None and crop is not None:
        if len(views) != 1:
            raise viz.BadPlotInput(f"--crop needs --layer: {source} has {len(views)} prunable weights "
                                   f"({', '.join(views)})")
        layer = next(iter(views))
    if layer is None:
        return viz.plot_layer_masks(views, show_constant=args.show_constant, title=f"masks of {source}")
    view = viz.select_views(views, layer, source)  # a name, "a,b", or a glob: heads stacked diagonally
    return viz.plot_mask(view, crop=crop, show_constant=args.show_constant)
