"""k-reciprocal re-ranking (Zhong, Zheng, Cao and Li, CVPR 2017), written from the paper.

The paper's steps, with ``N(p, k)`` the k nearest neighbours of ``p`` among all query and
gallery images (``p`` itself included, as its own nearest neighbour):

1. k-reciprocal neighbours: ``R(p, k) = {g in N(p, k) : p in N(g, k)}``.
2. Expansion: for each ``q`` in ``R(p, k1)``, add ``R(q, k1/2)`` (k1/2 rounded half to even)
   when ``|R(p, k1) & R(q, k1/2)| >= 2/3 |R(q, k1/2)|``; the union is ``R*(p, k1)``.
3. A sparse vector per image: ``V[p, g] = exp(-d(p, g))`` for ``g`` in ``R*(p, k1)``, else 0.
4. Local query expansion: ``V[p]`` becomes the mean of ``V[q]`` over ``q`` in ``N(p, k2)``.
5. Jaccard distance ``d_J(p, g) = 1 - sum_j min(V[p, j], V[g, j]) / sum_j max(V[p, j], V[g, j])``.
6. Final distance ``(1 - lambda) d_J + lambda d``, with ``d`` the original query-gallery distance.

Distances are used as given (the paper's Gaussian weights ``exp(-d)`` assume distances of
order one, as cosine distances are); no row normalisation of ``V`` is applied, as in the paper.
Defaults k1=20, k2=6, lambda=0.3 are the paper's. The result is deterministic.
"""
from __future__ import annotations

import numpy as np
import torch

from mmhpn.errors import ConfigError

# Neighbour search processes this many rows of the (n, n) distance matrix at a time.
_ROWS = 1024


def _matrix(name: str, values) -> torch.Tensor:
    tensor = values.detach().cpu() if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    if tensor.ndim != 2:
        raise ConfigError(f"{name} must be 2-D, got shape {tuple(tensor.shape)}")
    tensor = tensor.float()
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigError(f"{name} holds NaN or infinite distances; expected finite distances")
    return tensor


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """Re-ranked (num_query, num_gallery) float32 distances from the three distance blocks."""
    q_g, q_q, g_g = _matrix("q_g_dist", q_g_dist), _matrix("q_q_dist", q_q_dist), _matrix("g_g_dist", g_g_dist)
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq) or g_g.shape != (ng, ng):
        raise ConfigError(f"q_g_dist is {tuple(q_g.shape)}, so q_q_dist must be ({nq}, {nq}) and g_g_dist "
                          f"({ng}, {ng}); got {tuple(q_q.shape)} and {tuple(g_g.shape)}")
    if nq == 0 or ng == 0:
        raise ConfigError(f"re-ranking needs at least one query and one gallery image, got {nq} and {ng}")
    if not (isinstance(k1, int) and isinstance(k2, int) and k1 >= 1 and k2 >= 1):
        raise ConfigError(f"k1 and k2 must be positive integers, got k1={k1!r}, k2={k2!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ConfigError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    n = nq + ng

    def rows(a: int, b: int) -> torch.Tensor:
        """Rows a..b of the full (n, n) distance matrix [[q_q, q_g], [q_g^T, g_g]]."""
        parts = []
        if a < nq:
            parts.append(torch.cat([q_q[a:min(b, nq)], q_g[a:min(b, nq)]], 1))
        if b > nq:
            lo = max(a, nq) - nq
            parts.append(torch.cat([q_g[:, lo:b - nq].T, g_g[lo:b - nq]], 1))
        return torch.cat(parts, 0)

    k_half = int(round(k1 / 2))
    width = min(max(k1, k2) + 1, n)
    neighbours = np.empty((n, width), dtype=np.int64)
    for a in range(0, n, _ROWS):
        block = rows(a, min(a + _ROWS, n))
        # p is its own nearest neighbour: put it first whatever its listed self-distance.
        block[torch.arange(len(block)), torch.arange(a, a + len(block))] = -np.inf
        neighbours[a:a + len(block)] = torch.topk(block, width, dim=1, largest=False).indices.numpy()

    def reciprocal(k: int) -> list[np.ndarray]:
        nearest = neighbours[:, :min(k + 1, width)]
        mutual = (nearest[nearest] == np.arange(n)[:, None, None]).any(axis=2)
        return [nearest[p][mutual[p]] for p in range(n)]

    r_full, r_half = reciprocal(k1), reciprocal(k_half)
    expanded = []
    for p in range(n):
        members = set(r_full[p].tolist())
        parts = [r_full[p]]
        for q in r_full[p]:
            candidate = r_half[q]
            if len(members.intersection(candidate.tolist())) >= 2 / 3 * len(candidate):
                parts.append(candidate)
        expanded.append(np.unique(np.concatenate(parts)))

    # Sparse vectors V as (row, column, weight) triplets.
    v_rows = np.repeat(np.arange(n), [len(e) for e in expanded])
    v_cols = np.concatenate(expanded)
    v_vals = np.empty(len(v_cols), dtype=np.float64)
    for a in range(0, n, _ROWS):
        b = min(a + _ROWS, n)
        sel = (v_rows >= a) & (v_rows < b)
        v_vals[sel] = np.exp(-rows(a, b).double().numpy()[v_rows[sel] - a, v_cols[sel]])

    if k2 > 1:  # local query expansion: mean of the vectors of the k2 nearest neighbours
        nearest = neighbours[:, :min(k2, width)]
        starts = np.concatenate([[0], np.cumsum([len(e) for e in expanded])])
        new_rows, new_cols, new_vals = [], [], []
        for j in range(nearest.shape[1]):
            source = nearest[:, j]
            lengths = starts[source + 1] - starts[source]
            take = np.repeat(starts[source] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(
                lengths.sum())
            new_rows.append(np.repeat(np.arange(n), lengths))
            new_cols.append(v_cols[take])
            new_vals.append(v_vals[take] / nearest.shape[1])
        keys = np.concatenate(new_rows) * n + np.concatenate(new_cols)
        keys, inverse = np.unique(keys, return_inverse=True)
        v_vals = np.bincount(inverse.reshape(-1), weights=np.concatenate(new_vals))
        v_rows, v_cols = keys // n, keys % n

    # Jaccard distance between each query vector and every gallery vector: sum of minima
    # over the columns a query uses, through the gallery entries sorted by column.
    row_sums = np.bincount(v_rows, weights=v_vals, minlength=n)
    in_gallery = v_rows >= nq
    g_rows, g_cols, g_vals = v_rows[in_gallery] - nq, v_cols[in_gallery], v_vals[in_gallery]
    by_col = np.argsort(g_cols, kind="stable")
    g_rows, g_vals = g_rows[by_col], g_vals[by_col]
    col_start = np.concatenate([[0], np.cumsum(np.bincount(g_cols, minlength=n))])
    q_start = np.searchsorted(v_rows, np.arange(nq + 1))  # v_rows is sorted by row
    jaccard = np.empty((nq, ng), dtype=np.float64)
    for p in range(nq):
        cols, vals = v_cols[q_start[p]:q_start[p + 1]], v_vals[q_start[p]:q_start[p + 1]]
        lengths = col_start[cols + 1] - col_start[cols]
        take = np.repeat(col_start[cols] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(
            lengths.sum())
        minima = np.bincount(g_rows[take], weights=np.minimum(np.repeat(vals, lengths), g_vals[take]),
                             minlength=ng)
        maxima = row_sums[p] + row_sums[nq:] - minima
        jaccard[p] = 1 - np.divide(minima, maxima, out=np.zeros(ng), where=maxima > 0)
    final = (1 - lambda_value) * jaccard + lambda_value * q_g.double().numpy()
    return final.astype(np.float32)
