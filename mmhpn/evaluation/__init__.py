"""Evaluation: the re-ID protocol (CMC, mAP), descriptors, multiple query, re-ranking.

* `protocol` - `evaluate` (from distances) and `evaluate_features` (from descriptors),
  the `ReIDResult` they return, and the conventions every number of the book follows.
* `features` - `extract_features` from a model and a loader, `pool_multi_query`.
* `images` - `extract_images`: descriptors of any image files (`mmhpn extract`, `mmhpn rank`).
* `reranking` - k-reciprocal re-ranking (`re_ranking`), an option of `evaluate_features`.
* `ranking` - `ranking_table`: the top-k gallery of chosen queries as data (Figure 4);
  import it from `mmhpn.evaluation.ranking`.
* `model` - `evaluate_model`: a model scored on a dataset's query/gallery (what training,
  `mmhpn evaluate` and the book call), and `model_descriptors`, the descriptors it scores;
  import them from `mmhpn.evaluation.model`.
"""
from mmhpn.evaluation.features import extract_features, pool_multi_query
from mmhpn.evaluation.images import extract_images
from mmhpn.evaluation.protocol import (METRICS, PROTOCOLS, ReIDResult, evaluate, evaluate_features,
                                       pairwise_distance)
from mmhpn.evaluation.reranking import re_ranking

__all__ = ["METRICS", "PROTOCOLS", "ReIDResult", "evaluate", "evaluate_features", "extract_features",
           "extract_images", "pairwise_distance", "pool_multi_query", "re_ranking"]
