"""viz — figures of pruned networks: functions that take data and return a ``Figure``.

Nothing here touches pyplot's global state; every figure has its own Agg canvas, and
:func:`save_figure` writes PNG / SVG / PDF (from the extension) atomically.

Colours mean the same thing everywhere: kept / effective near-black, pruned light grey,
dead (kept, not effective) vermillion, constant (dead, fed by a bias) blue.

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
connectivity
``plot_network``                layered drawing of a small network (unit pairs, dead edges)
``plot_layer_bars``             per-layer stacked bars from an audit report
``plot_dead_units``             a strip of units per group, dead ones marked
``plot_audit``                  bars + strip, for networks of any size
``plot_connectivity``           layered drawing when small, ``plot_audit`` otherwise
``plot_receptive_sets``         ``S_a``: which inputs reach each unit
ablation
``load_ablation``, ``plot_ablation``   % effective and accuracy vs rate, a line per method
I/O
``checkpoint_views``, ``read_checkpoint``, ``save_figure``
==============================  ============================================================
"""

from ._ablation import AblationRow, ablation_rows, load_ablation, plot_ablation
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
    plot_receptive_sets,
)
from ._errors import BadPlotInput
from ._masks import (
    MaskView,
    block_diagonal,
    mask_rgb,
    mask_view,
    plot_layer_masks,
    plot_mask,
    plot_mask_grid,
    select_views,
    unfold,
)
from ._save import figure_format, save_figure
from ._source import checkpoint_views, read_checkpoint

__all__ = [
    "MaskView",
    "mask_view",
    "mask_rgb",
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
    "plot_network",
    "plot_layer_bars",
    "plot_dead_units",
    "plot_audit",
    "plot_connectivity",
    "plot_receptive_sets",
    "AblationRow",
    "ablation_rows",
    "load_ablation",
    "plot_ablation",
    "checkpoint_views",
    "read_checkpoint",
    "figure_format",
    "save_figure",
    "BadPlotInput",
]
