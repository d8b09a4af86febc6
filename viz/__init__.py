"""viz — figures of pruned networks: functions that take data and return a ``Figure``.

Nothing here touches pyplot's global state; every figure has its own Agg canvas, and
:func:`save_figure` writes PNG / SVG / PDF (from the extension) atomically.

Colours mean the same thing everywhere (``viz._style``): kept / effective near-black, pruned
and unused light grey, dead because not accessible vermillion, dead because not coaccessible
reddish purple (hatched / dash-dot where a hatch or line style fits), constant (dead, fed by a
bias) blue.  Units are effective, dead (kept weights, no effect) or unused (no kept weight).

Drawing functions take data (arrays, views, graphs, reports, rows), never a path; files are
read in one place, ``viz._source`` (``read_checkpoint``, ``checkpoint_views``, ``grid_views``,
``load_ablation``).

Public surface
--------------
==============================  ============================================================
masks (coarse-to-fine Fig. 2)
``MaskView``, ``mask_view``     a mask plus its audited dead / constant weights
``mask_rgb``, ``unfold``        the exact image drawn (one RGB pixel per entry)
``block_diagonal``              per-head weights on one diagonal, as the paper draws them
``select_views``                a weight by name, or several (list, ``a,b``, glob) stacked
``plot_mask``                   one mask; ``crop=``, grid per channel, ``exact=True``
``plot_layer_masks``            every prunable layer of a network, one panel each
``plot_mask_grid``              rows = methods, columns = pruning rates
``mask_codes``, ``pooled_codes``  entry states, and the pooled cells drawn for big masks
connectivity
``unit_states``, ``input_states``  0 unused / 1 dead / 2 effective per unit
``plot_network``                layered drawing of a small network (unit pairs, dead edges)
``plot_network_pair``           two models on one layout, what differs highlighted
``plot_layer_bars``             per-layer stacked bars from an audit report
``plot_dead_units``             a strip of units per group, dead ones marked
``plot_audit``                  bars + strip, for networks of any size
``plot_connectivity``           layered drawing when small, ``plot_audit`` otherwise
``plot_receptive_sets``         ``S_a``: which inputs reach each unit
ablation and headline
``ablation_rows``, ``ablation_summary``  validated runs; mean ± sd per (dataset, method, rate)
``plot_ablation``               % effective and accuracy vs rate, mean ± sd, dense and chance lines
``plot_input_states``           which inputs still reach an output, as an image per model
``plot_headline``               the sweep next to the input images (the demo's first figure)
I/O
``checkpoint_views``, ``read_checkpoint``, ``grid_views``, ``load_ablation``, ``save_figure``
==============================  ============================================================
"""

from ._ablation import AblationRow, ablation_panels, ablation_rows, ablation_summary, plot_ablation
from ._connectivity import (
    dead_units,
    edge_classes,
    is_small,
    layer_parts,
    network_layout,
    plot_audit,
    plot_connectivity,
    plot_dead_units,
    plot_layer_bars,
    plot_network,
    plot_network_pair,
    plot_receptive_sets,
)
from ._headline import plot_headline, plot_input_states
from ._errors import BadPlotInput
from ._masks import (
    MaskView,
    block_diagonal,
    mask_codes,
    mask_rgb,
    mask_view,
    plot_layer_masks,
    plot_mask,
    plot_mask_grid,
    pooled_codes,
    select_views,
    unfold,
)
from ._save import figure_format, save_figure
from ._source import checkpoint_views, grid_views, load_ablation, read_checkpoint
from ._states import input_states, unit_states

__all__ = [
    "MaskView",
    "mask_view",
    "mask_rgb",
    "mask_codes",
    "pooled_codes",
    "unfold",
    "block_diagonal",
    "select_views",
    "plot_mask",
    "plot_layer_masks",
    "plot_mask_grid",
    "network_layout",
    "edge_classes",
    "dead_units",
    "layer_parts",
    "is_small",
    "unit_states",
    "input_states",
    "plot_network",
    "plot_network_pair",
    "plot_layer_bars",
    "plot_dead_units",
    "plot_audit",
    "plot_connectivity",
    "plot_receptive_sets",
    "AblationRow",
    "ablation_rows",
    "ablation_summary",
    "ablation_panels",
    "load_ablation",
    "plot_ablation",
    "plot_input_states",
    "plot_headline",
    "checkpoint_views",
    "grid_views",
    "read_checkpoint",
    "figure_format",
    "save_figure",
    "BadPlotInput",
]
