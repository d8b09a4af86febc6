"""`netgraph plot`: draw a checkpoint's masks, its connectivity, its receptive sets, or an ablation.

    netgraph plot masks CKPT [--layer NAME] [--crop R0,R1,C0,C1] [--show-constant] -o OUT
    netgraph plot connectivity CKPT [--style auto|layered|bars] [--compare CKPT2] -o OUT
    netgraph plot receptive CKPT [--group NAME] [--input-shape 8,8] -o OUT
    netgraph plot ablation RESULTS.json [--dataset NAME] -o OUT

The checkpoint kinds take ``--model SPEC`` (the model's code, traced for the exact graph)
like ``audit``; without it the graph is the checkpoint's stored topology or an inferred chain.
The format (PNG, SVG, PDF) comes from OUT's extension.  OUT is checked before any work (the
output contract: an existing file needs ``--force``, never the input) and written atomically;
the written path is printed on stdout.  Bad input is a one-line error and exit status 2, with
no file written.  This module imports only argparse at load time; ``run`` imports viz.
"""

from __future__ import annotations

import argparse

from ._options import add_model_options, add_output_options, option

_EPILOG = "OUT's extension picks the format: .png, .svg or .pdf. Shapes are written with commas (8,8)."
KINDS = ("masks", "connectivity", "receptive", "ablation")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="draw masks, connectivity, receptive sets or ablation curves to PNG/SVG/PDF",
        description="Draw a checkpoint's masks (dead weights marked), its connectivity (alone or "
                    "against a second model), the receptive sets of its outputs (S_a), or an "
                    "ablation's curves (mean ± sd over seeds).  KIND is one of: " + ", ".join(KINDS) + ".",
        epilog=_EPILOG,
    )
    kinds = p.add_subparsers(dest="plot_kind", metavar="KIND", title="kinds (netgraph plot KIND --help)")
    kinds.required = True

    m = kinds.add_parser("masks", help="mask tensors as binary images (kept dark, pruned light, dead marked)",
                         epilog=_EPILOG, description="Mask tensors as images: kept dark, pruned light grey, dead "
                         "weights by kind (not accessible vermillion, not coaccessible purple).")
    _checkpoint(m)
    option(m, "--layer", metavar="NAME", default=None,
           help="one weight (fc1.weight), or several ('a,b' or a glob like 'heads.*.weight') drawn as "
                "diagonal blocks, one per head; omitted: every prunable layer, one panel each")
    option(m, "--crop", metavar="R0,R1,C0,C1", default=None,
           help="rows R0:R1 and columns C0:C1 of the unfolded mask (needs --layer when there are several layers)")
    option(m, "--show-constant", action="store_true",
           help="draw constant weights (dead, fed by a bias) in their own colour")
    _common(m)

    c = kinds.add_parser("connectivity", help="layered drawing when small, per-layer bars otherwise",
                         epilog=_EPILOG, description="Connectivity: every unit and unit pair when the network "
                         "is small (layered), per-layer bars of kept weights and unit strips otherwise.")
    _checkpoint(c)
    option(c, "--style", choices=("auto", "layered", "bars"), default="auto",
           help="auto: layered up to --max-units units, bars beyond; layered refuses bigger networks "
                "(they are unreadable)")
    option(c, "--max-units", type=int, default=160, metavar="N",
           help="largest network (units) drawn unit by unit (also with --compare)")
    option(c, "--compare", metavar="CKPT2", default=None,
           help="a second checkpoint of the same architecture: both drawn side by side on one layout, "
                "what differs highlighted (layered style only)")
    _common(c)

    r = kinds.add_parser("receptive", help="which inputs reach each unit (S_a), as an image", epilog=_EPILOG,
                         description="Receptive sets: which inputs reach each unit of a group (S_a).")
    _checkpoint(r)
    option(r, "--group", metavar="NAME", default=None,
           help="the group whose units are shown; omitted: the output")
    option(r, "--image-shape", metavar="H,W", default=None,
           help="draw each unit's set as an image of this shape, comma-separated, e.g. 8,8 or 28,28; "
                "omitted: one row per unit")
    _common(r)

    a = kinds.add_parser("ablation", help="%% effective and accuracy vs rate, mean ± sd per method",
                         epilog=_EPILOG, description="Ablation curves from `netgraph ablate`'s JSON: mean ± sd "
                         "over seeds, dense baseline and chance as lines.")
    option(a, "results", metavar="RESULTS.json", help="the JSON written by `netgraph ablate`")
    option(a, "--dataset", metavar="NAME", default=None,
           help="only this dataset's rows; omitted: a row of panels per dataset")
    add_output_options(a, what="image file (.png, .svg or .pdf)")
    p.set_defaults(func=run)


def _checkpoint(p: argparse.ArgumentParser) -> None:
    option(p, "checkpoint", metavar="CKPT", help="state_dict file (.pt/.pth/.bin/.safetensors)")


def _common(p: argparse.ArgumentParser) -> None:
    add_model_options(p, required=False)
    add_output_options(p, what="image file (.png, .svg or .pdf)")


def _ints(text: str, n: int | None, what: str, example: str) -> tuple[int, ...]:
    from viz import BadPlotInput

    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(v) for v in parts)
    except ValueError:
        values = ()
    if not values or (n is not None and len(values) != n) or min(values) < 0:
        raise BadPlotInput(f"{what} must be {example}, got {text!r}")
    return values


def _graph_and_masks(args, path: str):
    """``(graph, masks, source)``: traced with --model, else the checkpoint's own graph."""
    import viz

    if getattr(args, "model", None):
        import numpy as np

        from ._model import prepare_model

        user = prepare_model(args, path)
        traced = user.traced
        masks = {}
        for name in (b.name for b in traced.graph.weighted_blocks):
            mod, param = traced.module(name)
            mask = getattr(mod, param + "_mask", None)
            value = mask if mask is not None else getattr(mod, param)
            masks[name] = np.asarray(value.detach().cpu().numpy() != 0)
        return traced.graph, masks, path
    return viz.read_checkpoint(path)


def run(args) -> int:
    import os

    import viz
    from netgraph.io import output_path

    viz.figure_format(args.output)  # refuse an unknown extension before any work
    inputs = [args.results] if args.plot_kind == "ablation" else [args.checkpoint]
    if getattr(args, "compare", None):
        inputs.append(args.compare)
    out = output_path(args.output, force=args.force, inputs=[i for i in inputs if os.path.exists(i)])
    kind = args.plot_kind
    if kind == "ablation":
        from .ablate import LABELS  # trainer's method names as the tables write them

        fig = viz.plot_ablation(viz.load_ablation(args.results), dataset=args.dataset, labels=LABELS)
    else:
        from netgraph import reachability

        graph, masks, source = _graph_and_masks(args, args.checkpoint)
        reach = reachability(graph)
        if kind == "masks":
            fig = _masks(viz, args, graph, masks, reach, source)
        elif kind == "connectivity":
            fig = _connectivity(viz, args, graph, reach, source)
        else:  # receptive
            shape = _ints(args.image_shape, None, "--image-shape", "sizes separated by commas, like 8,8") \
                if args.image_shape else None
            fig = viz.plot_receptive_sets(graph, args.group, input_shape=shape)
    viz.save_figure(fig, out)
    print(out)
    return 0


def _connectivity(viz, args, graph, reach, source):
    from netgraph import audit, reachability

    if args.compare:
        if args.style == "bars":
            raise viz.BadPlotInput("--compare draws two layered drawings; it cannot be used with --style bars")
        import os

        other, _, other_source = _graph_and_masks(args, args.compare)
        names = (os.path.basename(source), os.path.basename(other_source))  # short labels keep the titles in the figure
        labels = names if names[0] != names[1] else (source, other_source)
        return viz.plot_network_pair(graph, other, labels=labels, reach_a=reach,
                                     reach_b=reachability(other), max_units=args.max_units)
    if args.style == "layered" or (args.style == "auto" and viz.is_small(graph, max_units=args.max_units)):
        # layered refuses a network above --max-units units (a hairball) with a one-line error
        return viz.plot_network(graph, reach, title=f"connectivity of {source}", max_units=args.max_units)
    return viz.plot_audit(audit(graph, reach, source=source), graph, reach)


def _masks(viz, args, graph, masks, reach, source):
    views = {name: viz.mask_view(masks[name], graph, name, reach=reach)
             for name in (b.name for b in graph.weighted_blocks) if name in masks}
    crop = _ints(args.crop, 4, "--crop", "four comma-separated integers r0,r1,c0,c1") if args.crop else None
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
