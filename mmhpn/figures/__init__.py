"""Drawing: the paper's Figures 3-5 and plots of what was measured and learned.

Every function here draws arrays and frames computed elsewhere; nothing here runs a model.

* `pictures` - Figure 3 (`attention_maps`: the maps from `mmhpn.attribution.compare_attention`)
  and Figure 4 (`ranking_figure`: a ranking from `mmhpn.evaluation.ranking.ranking_table`, or
  `nearest_gallery` for images without identities as `mmhpn rank` draws them; the heatmaps
  from `mmhpn.attribution.similarity_heatmaps`), with `denormalize`, `overlay`, `stripe_bounds`.
* `plots` - Figure 5 (`body_scale_curves`), `aps_weight_plot`, `table_bars`,
  `claims_forest`, `training_curves`, `row_curves`, `validation_curves`.
* `style` - the colours (colour-blind safe), the matplotlib style, and `save_figure`: a PNG
  plus a vector copy (PDF or SVG), each written atomically.

Images going into a model are ImageNet-normalised tensors, as `mmhpn.data.build_transforms`
(train=False) makes them; `denormalize` turns them back into displayable RGB arrays.
Figures are plain `matplotlib.figure.Figure` objects (no pyplot state): a notebook shows
the returned figure once, and nothing accumulates in memory across calls. Every name is
importable from `mmhpn.figures`.
"""
from mmhpn.figures.pictures import attention_maps, denormalize, overlay, ranking_figure, stripe_bounds
from mmhpn.figures.plots import (aps_weight_plot, body_scale_curves, claims_forest, row_curves, table_bars,
                                 training_curves, validation_curves)
from mmhpn.figures.style import (HEATMAP_CMAP, MATCH_COLOR, MISMATCH_COLOR, PALETTE, QUERY_COLOR, VECTOR_FORMATS,
                                 save_figure)

__all__ = ["HEATMAP_CMAP", "MATCH_COLOR", "MISMATCH_COLOR", "PALETTE", "QUERY_COLOR", "VECTOR_FORMATS",
           "aps_weight_plot", "attention_maps", "body_scale_curves", "claims_forest", "denormalize", "overlay",
           "ranking_figure", "row_curves", "save_figure", "stripe_bounds", "table_bars", "training_curves",
           "validation_curves"]
