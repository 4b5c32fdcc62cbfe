"""Ranking data for Figure 4: the top-k gallery images of chosen queries, as a table.

`ranking_table` ranks the gallery for some queries (the best, median and worst by average
precision, or given indices) under the evaluation protocol: the gallery images the protocol
ignores for a query (same identity and camera, junk) are removed before ranking, exactly as
when the metrics are computed. `nearest_gallery` is the plain ranking of images whose
identities are unknown (`mmhpn rank`). `mmhpn.figures.ranking_figure` draws either table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mmhpn.errors import ConfigError
from mmhpn.evaluation.protocol import evaluate, label_vector, valid_gallery_mask


def _pick_queries(queries, query_ap: np.ndarray) -> list[tuple[int, str]]:
    """[(query index, why shown)] for queries="auto" (best, median, worst AP) or indices."""
    num_queries = len(query_ap)
    if isinstance(queries, str):
        if queries != "auto":
            raise ConfigError(f"queries must be 'auto' or a sequence of query indices, got {queries!r}")
        scored = np.flatnonzero(~np.isnan(query_ap))
        # Stable sort by AP: among equal APs the lower query index comes first.
        ascending = scored[np.argsort(query_ap[scored], kind="stable")]
        descending = scored[np.lexsort((scored, -query_ap[scored]))]
        picks = [(int(descending[0]), "best AP"), (int(ascending[len(ascending) // 2]), "median AP"),
                 (int(ascending[0]), "worst AP")]
        chosen, seen = [], set()
        for index, why in picks:
            if index not in seen:
                chosen.append((index, why))
                seen.add(index)
        return chosen
    indices = [int(q) for q in np.asarray(queries).reshape(-1)]
    if not indices:
        raise ConfigError("queries is empty; pass query indices or 'auto'")
    bad = [q for q in indices if not 0 <= q < num_queries]
    if bad:
        raise ConfigError(f"query index(es) {bad[:5]} are outside 0..{num_queries - 1}")
    return [(q, "") for q in indices]


def _check_distmat(distmat) -> np.ndarray:
    if distmat is None:
        raise ConfigError("a distance matrix (num_query, num_gallery) is needed, got None")
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.detach().cpu().numpy()
    distmat = np.asarray(distmat, dtype=np.float64)
    if distmat.ndim != 2:
        raise ConfigError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}")
    if not np.isfinite(distmat).all():
        raise ConfigError("distmat holds NaN or infinite distances; expected finite distances")
    return distmat


def _check_top_k(top_k) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    return int(top_k)


def _nearest(distances: np.ndarray, candidates: np.ndarray, top_k: int) -> np.ndarray:
    """The `top_k` nearest of `candidates` (gallery indices), nearest first; equal distances
    are ordered by index, as in `mmhpn.evaluation`."""
    return candidates[np.argsort(distances[candidates], kind="stable")][:top_k]


def nearest_gallery(distmat, top_k: int = 10) -> pd.DataFrame:
    """The top-`top_k` gallery images of every query when identities are unknown, one row per
    (query, rank): columns ``query``, ``rank`` (1-based), ``gallery`` (index) and ``distance``.
    Nothing is removed (there is no identity or camera to remove by)."""
    top_k = _check_top_k(top_k)
    distmat = _check_distmat(distmat)
    every = np.arange(distmat.shape[1])
    rows = [{"query": query, "rank": rank, "gallery": int(gallery), "distance": float(distmat[query, gallery])}
            for query in range(len(distmat))
            for rank, gallery in enumerate(_nearest(distmat[query], every, top_k), start=1)]
    return pd.DataFrame(rows, columns=["query", "rank", "gallery", "distance"])


def ranking_table(distmat, query_pids, gallery_pids, query_camids, gallery_camids, queries="auto",
                  top_k: int = 10, protocol: str = "toolbox") -> pd.DataFrame:
    """The top-`top_k` ranking of some queries as a tidy table, one row per (query, rank).

    Columns: ``query`` (index), ``pick`` ("best AP", "median AP", "worst AP" for
    queries="auto", else ""), ``query_pid``, ``query_camid``, ``ap`` (the query's average
    precision under `protocol`, NaN if it has no true match), ``num_excluded`` (gallery
    images removed from this query's ranking by the protocol), ``rank`` (1-based),
    ``gallery`` (index), ``pid``, ``camid``, ``distance`` and ``match`` (same id as the query).
    Gallery images at equal distance are ordered by index, as in `mmhpn.evaluation`.
    """
    top_k = _check_top_k(top_k)
    distmat = _check_distmat(distmat)
    q_pids, g_pids = label_vector("query_pids", query_pids).numpy(), label_vector("gallery_pids", gallery_pids).numpy()
    q_cams = label_vector("query_camids", query_camids).numpy()
    g_cams = label_vector("gallery_camids", gallery_camids).numpy()
    # evaluate() checks the shapes and labels and gives each query's AP (NaN when skipped).
    query_ap = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=1, protocol=protocol).query_ap
    rows = []
    for query, pick in _pick_queries(queries, query_ap):
        valid = valid_gallery_mask(q_pids[query], q_cams[query], g_pids, g_cams, protocol)
        candidates = np.flatnonzero(valid)
        if len(candidates) == 0:
            raise ConfigError(f"query {query} has no gallery image left after the protocol's exclusions "
                              "(every gallery image has its id and camera)")
        for rank, gallery in enumerate(_nearest(distmat[query], candidates, top_k), start=1):
            rows.append({
                "query": query, "pick": pick, "query_pid": int(q_pids[query]), "query_camid": int(q_cams[query]),
                "ap": float(query_ap[query]), "num_excluded": int((~valid).sum()), "rank": rank,
                "gallery": int(gallery), "pid": int(g_pids[gallery]), "camid": int(g_cams[gallery]),
                "distance": float(distmat[query, gallery]), "match": bool(g_pids[gallery] == q_pids[query]),
            })
    return pd.DataFrame(rows, columns=["query", "pick", "query_pid", "query_camid", "ap", "num_excluded", "rank",
                                       "gallery", "pid", "camid", "distance", "match"])
