"""CMC and mAP under the standard re-ID protocol, from a distance matrix or from features.

Conventions (every number of the book comes out of here):

* Per query, gallery images with the query's id *and* camera are *junk*: they are removed
  from that query's ranking. Distractors (id 0) are ordinary negatives. A query with no
  true match left (same id, other camera) is skipped and counted in ``num_skipped``.
* ``protocol="toolbox"`` (default): AP is the mean of the precision at each true match,
  as in the widely used PyTorch re-ID toolboxes (open-reid, torchreid, fast-reid).
  Gallery id -1 is an ordinary id here; those toolboxes drop Market's -1 images at load
  time, and so does `mmhpn.data`.
* ``protocol="market1501-official"``: the scoring of the official Market-1501 MATLAB code
  (``compute_AP.m``): junk is same-id-same-camera *plus* every gallery image with id -1,
  and AP is the trapezoid rule over the precision/recall curve,
  ``sum_k (1/n) * (p_before_k + p_at_k) / 2``, where ``p_before_k`` is the precision just
  before the k-th true match (1.0 when that match is ranked first).
* CMC: ``cmc[k-1]`` is the fraction of scored queries with a true match in the first k
  (non-junk) places. Its length is always ``max_rank``; ranks past the gallery size are 1.
* Ties: images at equal distance are ordered by gallery index (the order of a stable sort,
  which is what MATLAB's ``sort`` gives; NumPy's default ``argsort`` agrees whenever
  there are no ties).

How it is fast: a query's AP needs the rank of each of its few true matches, not a sort of
the gallery. Per chunk of queries we compute the distance block with one matrix product,
send junk to +inf, and count for each true match how many gallery images are strictly
closer: one ``searchsorted`` of the distances into the query's sorted true-match
distances, then a histogram. Only images closer than the query's farthest true match can
matter, so when those are few (any useful model) only they are searched. Exact ties between
a true match and another image, which counting cannot order, are detected and those
queries are re-ranked with a stable sort. The product is one large matrix multiply (the
gallery is packed once); the scoring runs on one CPU thread (see `_one_cpu_thread`).
On the Market-1501-sized benchmark the whole evaluation takes about 1.1x the time of the
bare query x gallery product (`benchmarks/bench_evaluation.py`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mmhpn.data.market import JUNK_PID  # the id Market-style file names give junk images
from mmhpn.errors import ConfigError

PROTOCOLS = ("toolbox", "market1501-official")
METRICS = ("cosine", "euclidean")

# Above this fraction of "near" images (closer than the farthest true match) a chunk is
# searched whole instead of compacted first: the two cost the same around 8% on the
# Market-sized benchmark (a trained model gives ~2%). Both give identical results; the
# tests force each.
_DENSE_FRACTION = 0.08
# Block sizes, in distances. The product is taken in blocks of at most _PRODUCT_ELEMENTS
# (256 MiB in float32: Market-1501's whole 3,368 x 15,913 matrix is one block), because
# each matrix product re-packs the whole gallery: on the benchmark, products of 250 query
# rows cost ~1.5x more per row than one product of all rows. Scoring then walks the block
# in row slices of at most _SCORE_ELEMENTS, which bounds its temporaries.
_PRODUCT_ELEMENTS = 1 << 26
_SCORE_ELEMENTS = 1 << 22


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields have no single truth value
class ReIDResult:
    """Scores of one evaluation. ``cmc[k-1]`` is rank-k accuracy; fractions in [0, 1]."""

    cmc: np.ndarray
    mAP: float
    num_queries: int
    num_skipped: int
    protocol: str
    query_ap: np.ndarray = field(repr=False, compare=False)  # per query, NaN where skipped
    query_first_match: np.ndarray = field(repr=False, compare=False)  # 0-based rank, -1 where skipped

    def rank(self, k: int) -> float:
        """Rank-k accuracy (k >= 1)."""
        if not 1 <= k <= len(self.cmc):
            raise ConfigError(f"rank k must be in 1..{len(self.cmc)} (max_rank), got {k}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict:
        """JSON-ready summary: rank1, rank5, rank10, mAP, num_queries, num_skipped, protocol."""
        out = {f"rank{k}": self.rank(k) for k in (1, 5, 10) if k <= len(self.cmc)}
        out.update(mAP=float(self.mAP), num_queries=int(self.num_queries),
                   num_skipped=int(self.num_skipped), protocol=self.protocol)
        return out


# ------------------------------------------------------------------------------------------
# Input checks


def label_vector(name: str, values) -> torch.Tensor:
    """`values` as a 1-D int64 tensor of labels; a ConfigError naming `name` if it is not one."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ConfigError(f"{name} must be 1-D (one label per image), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ConfigError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))


def _check_labels(query_pids, gallery_pids, query_camids, gallery_camids):
    q_pids, g_pids = label_vector("query_pids", query_pids), label_vector("gallery_pids", gallery_pids)
    q_cams, g_cams = label_vector("query_camids", query_camids), label_vector("gallery_camids", gallery_camids)
    if len(q_pids) == 0:
        raise ConfigError("empty query: query_pids has length 0; at least one query image is needed")
    if len(g_pids) == 0:
        raise ConfigError("empty gallery: gallery_pids has length 0; at least one gallery image is needed")
    if len(q_cams) != len(q_pids):
        raise ConfigError(f"query_camids has length {len(q_cams)} but query_pids has length {len(q_pids)}; "
                          "expected one id and one camera per query image")
    if len(g_cams) != len(g_pids):
        raise ConfigError(f"gallery_camids has length {len(g_cams)} but gallery_pids has length "
                          f"{len(g_pids)}; expected one id and one camera per gallery image")
    return q_pids, g_pids, q_cams, g_cams


def _check_options(max_rank, protocol):
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ConfigError(f"max_rank must be a positive integer, got {max_rank!r}")


def _chunk_rows(chunk_size, num_query, num_gallery, budget):
    if chunk_size is None:  # equal chunks, none above the budget
        most = max(1, budget // max(num_gallery, 1))
        return math.ceil(num_query / math.ceil(num_query / most))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return int(chunk_size)


# ------------------------------------------------------------------------------------------
# The scorer


class _Gallery:
    """Gallery labels, with the positions of each identity's images for quick look-up."""

    def __init__(self, pids: torch.Tensor, camids: torch.Tensor, device: torch.device):
        self.pids, self.camids = pids.to(device), camids.to(device)
        self.order = torch.argsort(self.pids, stable=True)  # gallery index order within an id
        self.ids, self.counts = torch.unique_consecutive(self.pids[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def same_id(self, q_pids: torch.Tensor):
        """(c, s) gallery indices of each query's id (padded with 0) and the mask of real ones."""
        slot = torch.searchsorted(self.ids, q_pids).clamp_(max=len(self.ids) - 1)
        count = torch.where(self.ids[slot] == q_pids, self.counts[slot], 0)
        width = max(int(count.max()), 1)
        offsets = torch.arange(width, device=q_pids.device)
        present = offsets < count[:, None]
        where = (self.starts[slot][:, None] + offsets).clamp_(max=len(self.order) - 1)
        index = torch.where(present, self.order[where], 0)
        return index, present


def _score_block(dist: torch.Tensor, q_pids, q_cams, gallery: _Gallery, dense_fraction=None):
    """Rank of the first true match and AP inputs for each query of one block.

    ``dist`` (c, G) is modified in place. Returns (positions, n_match): positions (c, s)
    holds the 0-based rank of each query's true matches in increasing order (valid for the
    first n_match[q] columns).
    """
    c, num_gallery = dist.shape
    dense_fraction = _DENSE_FRACTION if dense_fraction is None else dense_fraction
    index, present = gallery.same_id(q_pids)
    same_cam = gallery.camids[index] == q_cams[:, None]
    is_match, is_junk = present & ~same_cam, present & same_cam
    rows = torch.arange(c, device=dist.device)[:, None].expand_as(index)
    # Junk leaves the ranking: at +inf it sorts after every (finite) true match.
    dist[rows[is_junk], index[is_junk]] = math.inf

    match_dist = torch.where(is_match, dist.gather(1, index), math.inf)
    match_dist, order = torch.sort(match_dist, dim=1, stable=True)
    match_index = index.gather(1, order)
    n_match = is_match.sum(1)
    width = match_dist.shape[1]
    farthest = torch.where(n_match > 0, match_dist.gather(1, (n_match - 1).clamp(min=0)[:, None])[:, 0],
                           -math.inf)

    # For every image: how many true matches are at or before its distance (r). An image
    # is strictly closer than the k-th match (0-based) iff r <= k, so a histogram of r,
    # accumulated, gives each match's rank. Images beyond the farthest match never count.
    near = dist <= farthest[:, None]
    near_per_row = torch.count_nonzero(near, dim=1)
    if int(near_per_row.sum()) <= dense_fraction * near.numel():
        values = dist[near]
        value_rows = torch.repeat_interleave(torch.arange(c, device=dist.device), near_per_row)
        sequences = match_dist[value_rows]
        r = torch.searchsorted(sequences, values[:, None], right=True)[:, 0]
        before = sequences.gather(1, (r - 1).clamp(min=0)[:, None])[:, 0]
    else:
        values, value_rows = dist, torch.arange(c, device=dist.device)[:, None]
        r = torch.searchsorted(match_dist, dist, right=True)
        before = match_dist.gather(1, (r - 1).clamp(min=0))
    histogram = torch.bincount((r + value_rows * (width + 1)).reshape(-1), minlength=c * (width + 1))
    positions = histogram.view(c, width + 1).cumsum(1)[:, :width]

    # Equal distances: an image equal to a match distance other than the match itself, or
    # two equal matches. Counting cannot order those; a stable sort of the row can.
    equal = (r > 0) & (before == values)
    if values is dist:  # whole block: junk (+inf) equals the +inf padding of match_dist, not a tie
        equal_per_row = (equal & near).sum(1)
    else:
        equal_per_row = torch.bincount(value_rows[equal], minlength=c)
    duplicate = ((match_dist[:, 1:] == match_dist[:, :-1]) & torch.isfinite(match_dist[:, 1:])).any(1)
    tied = torch.nonzero((equal_per_row != n_match) | duplicate)[:, 0]
    for q in tied.tolist():
        rank_of = torch.empty(num_gallery, dtype=torch.long, device=dist.device)
        rank_of[torch.argsort(dist[q], stable=True)] = torch.arange(num_gallery, device=dist.device)
        k = int(n_match[q])
        positions[q, :k] = torch.sort(rank_of[match_index[q, :k]]).values
    return positions, n_match


def _query_scores(positions: torch.Tensor, n_match: torch.Tensor, protocol: str):
    """Per query AP (NaN where skipped) and first-match rank (-1 where skipped), as numpy."""
    positions = positions.double()
    k = torch.arange(1, positions.shape[1] + 1, device=positions.device, dtype=torch.float64)
    counted = k <= n_match[:, None]
    precision = k / (positions + 1)
    if protocol == "toolbox":
        area = precision
    else:  # trapezoid between the precision just before and at each true match
        before = torch.where(positions > 0, (k - 1) / positions.clamp(min=1), 1.0)
        area = (before + precision) / 2
    scored = n_match > 0
    ap = torch.where(scored, (area * counted).sum(1) / n_match.clamp(min=1), math.nan)
    first = torch.where(scored, positions[:, 0].long(), -1)
    return ap.cpu().numpy(), first.cpu().numpy()


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Scoring is many short operations; on CPU, one thread runs them faster than a pool.

    Each parallel operation waits for every pool thread, and on a busy machine a thread
    that is not scheduled costs a time slice per operation: scoring one block slice took
    ~280 ms with 2 threads and ~35 ms with 1 on the shared 2-core benchmark machine.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _score_rows(block, q_pids, q_cams, gallery, protocol, rows):
    """Per-query scores of a distance block, scored in row slices (views, changed in place)."""
    ap, first = [], []
    with _one_cpu_thread(block.device):
        for start in range(0, len(block), rows):
            positions, n_match = _score_block(block[start:start + rows], q_pids[start:start + rows],
                                              q_cams[start:start + rows], gallery)
            scores = _query_scores(positions, n_match, protocol)
            ap.append(scores[0])
            first.append(scores[1])
    return np.concatenate(ap), np.concatenate(first)


def _result(scores: list, max_rank: int, protocol: str) -> ReIDResult:
    ap = np.concatenate([a for a, _ in scores])
    first = np.concatenate([f for _, f in scores])
    scored = first >= 0
    num_scored = int(scored.sum())
    if num_scored == 0:
        raise ConfigError(f"none of the {len(first)} queries has a true match in the gallery (same id, "
                          "other camera); check that query and gallery come from the same dataset split")
    hits = np.bincount(np.minimum(first[scored], max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hits) / num_scored
    return ReIDResult(cmc=cmc, mAP=float(np.mean(ap[scored])), num_queries=num_scored,
                      num_skipped=int(len(first) - num_scored), protocol=protocol,
                      query_ap=ap, query_first_match=first)


def valid_gallery_mask(query_pid: int, query_camid: int, gallery_pids, gallery_camids,
                       protocol: str = "toolbox") -> np.ndarray:
    """Gallery images one query is ranked against: the junk rule of the module docstring, per query.

    `evaluate` applies the same rule to blocks of queries at once (`_score_block`,
    `_protocol_gallery`); this is its one-query form, for showing a ranking (the figures).

    Same id *and* same camera as the query is junk, removed from that query's ranking; under
    ``protocol="market1501-official"`` every gallery image with id -1 is junk too.
    Distractors (id 0) stay, as ordinary negatives.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    gallery_pids, gallery_camids = np.asarray(gallery_pids), np.asarray(gallery_camids)
    junk = (gallery_pids == query_pid) & (gallery_camids == query_camid)
    if protocol == "market1501-official":
        junk |= gallery_pids == JUNK_PID
    return ~junk


def _protocol_gallery(g_pids, g_cams, protocol, device):
    """The gallery columns a protocol keeps (official: id -1 is junk for every query)."""
    keep = None
    if protocol == "market1501-official" and bool((g_pids == JUNK_PID).any()):
        keep = torch.nonzero(g_pids != JUNK_PID)[:, 0]
        if len(keep) == 0:
            raise ConfigError("every gallery image has id -1 (junk under the official protocol); "
                              "no gallery image is left to rank")
        g_pids, g_cams = g_pids[keep], g_cams[keep]
        keep = keep.to(device)
    return keep, _Gallery(g_pids, g_cams, device)


# ------------------------------------------------------------------------------------------
# Public API


def evaluate(distmat, query_pids, gallery_pids, query_camids, gallery_camids, max_rank: int = 50,
             protocol: str = "toolbox", chunk_size: int | None = None) -> ReIDResult:
    """CMC and mAP from a (num_query, num_gallery) distance matrix (numpy array or tensor).

    Smaller distance = more similar. See the module docstring for the protocols and ties.
    """
    _check_options(max_rank, protocol)
    q_pids, g_pids, q_cams, g_cams = _check_labels(query_pids, gallery_pids, query_camids, gallery_camids)
    dist = distmat.detach() if isinstance(distmat, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(distmat))
    if dist.ndim != 2:
        raise ConfigError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(dist.shape)}")
    if tuple(dist.shape) != (len(q_pids), len(g_pids)):
        raise ConfigError(f"distmat has shape {tuple(dist.shape)} but there are {len(q_pids)} query labels "
                          f"and {len(g_pids)} gallery labels; expected ({len(q_pids)}, {len(g_pids)})")
    if not (dist.is_floating_point() and dist.dtype == torch.float64):
        dist = dist.float()  # float16/bfloat16/integer distances are ranked in float32
    device = dist.device
    q_pids, q_cams = q_pids.to(device), q_cams.to(device)
    keep, gallery = _protocol_gallery(g_pids, g_cams, protocol, device)
    rows = _chunk_rows(chunk_size, len(q_pids), len(g_pids), _SCORE_ELEMENTS)
    scores = []
    for start in range(0, len(q_pids), rows):
        block = dist[start:start + rows]
        block = block.index_select(1, keep) if keep is not None else block.clone()
        if not bool(torch.isfinite(block).all()):
            bad = torch.nonzero(~torch.isfinite(block))[0].tolist()
            raise ConfigError(f"distmat holds NaN or infinite distances (first at query {start + bad[0]}); "
                              "expected finite distances")
        scores.append(_score_rows(block, q_pids[start:start + rows], q_cams[start:start + rows], gallery,
                                  protocol, rows))
    return _result(scores, int(max_rank), protocol)


def _features(name: str, values) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    if tensor.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (images, dims), got shape {tuple(tensor.shape)}")
    tensor = tensor.detach()
    if tensor.dtype != torch.float64:
        tensor = tensor.float()
    return tensor


def _norms(name: str, feats: torch.Tensor) -> torch.Tensor:
    """Row norms, which also tell (in one pass) whether the features are finite."""
    norms = torch.linalg.vector_norm(feats, dim=1)
    if not bool(torch.isfinite(norms).all()):
        row = int(torch.nonzero(~torch.isfinite(norms))[0])
        raise ConfigError(f"{name} holds NaN or infinite values (first in row {row}); expected finite features")
    return norms


def _prepare(q: torch.Tensor, g: torch.Tensor, metric: str, names=("query_features", "gallery_features")):
    """Queries ready for the product, and the per-gallery-image term of the distance.

    Cosine: queries are L2-normalised, and the gallery's norms are applied to each distance
    block (``1 - (q . g) / |g|``) rather than by normalising a copy of the whole gallery.
    Euclidean: the squared gallery norms of ``|q|^2 + |g|^2 - 2 q . g``.
    """
    q_norms, g_norms = _norms(names[0], q), _norms(names[1], g)
    if metric == "cosine":
        return q / q_norms.clamp(min=1e-12)[:, None], -1 / g_norms.clamp(min=1e-12)
    return q, g_norms.pow(2)


def _distance_block(q: torch.Tensor, g: torch.Tensor, metric: str, g_term: torch.Tensor) -> torch.Tensor:
    if metric == "cosine":  # g_term = -1/|g|
        return torch.mm(q, g.T).mul_(g_term).add_(1)
    squared = torch.addmm(q.pow(2).sum(1, keepdim=True) + g_term[None, :], q, g.T, beta=1, alpha=-2)
    return squared.clamp_(min=0).sqrt_()


def pairwise_distance(a, b, metric: str = "cosine") -> torch.Tensor:
    """Full distance matrix between two feature sets, computed as `evaluate_features` does."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {METRICS}")
    a, b = _features("a", a), _features("b", b)
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a, b = a.to(dtype=dtype), b.to(a.device, dtype)
    a, b_term = _prepare(a, b, metric, names=("a", "b"))
    return _distance_block(a, b, metric, b_term)


def evaluate_features(query_features, gallery_features, query_pids, gallery_pids, query_camids,
                      gallery_camids, metric: str = "cosine", max_rank: int = 50, protocol: str = "toolbox",
                      rerank: bool = False, chunk_size: int | None = None, device=None,
                      rerank_options: dict | None = None) -> ReIDResult:
    """Distances and scores in one call; features are (images, dims) numpy arrays or tensors.

    ``metric="cosine"``: distance ``1 - cos`` on L2-normalised features; ``"euclidean"``:
    plain Euclidean distance. The product is taken for ``chunk_size`` queries at a time
    (default: equal chunks of at most 64M distances, 256 MiB in float32; lower it to save
    memory on large galleries) and scored in smaller slices, so no larger matrix is held unless
    ``rerank=True`` (k-reciprocal re-ranking needs query-query and gallery-gallery
    distances too; ``rerank_options`` are passed to `re_ranking`). ``device``: where to
    compute (default: the device of ``query_features``).
    """
    _check_options(max_rank, protocol)
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {METRICS}")
    q_pids, g_pids, q_cams, g_cams = _check_labels(query_pids, gallery_pids, query_camids, gallery_camids)
    qf, gf = _features("query_features", query_features), _features("gallery_features", gallery_features)
    if len(qf) != len(q_pids):
        raise ConfigError(f"query_features has {len(qf)} rows but query_pids has length {len(q_pids)}")
    if len(gf) != len(g_pids):
        raise ConfigError(f"gallery_features has {len(gf)} rows but gallery_pids has length {len(g_pids)}")
    if qf.shape[1] != gf.shape[1]:
        raise ConfigError(f"query_features are {qf.shape[1]}-d but gallery_features are {gf.shape[1]}-d")
    device = torch.device(device) if device is not None else qf.device
    dtype = torch.float64 if torch.float64 in (qf.dtype, gf.dtype) else torch.float32
    qf, gf = qf.to(device, dtype), gf.to(device, dtype)

    if rerank:
        from mmhpn.evaluation.reranking import re_ranking
        _norms("query_features", qf), _norms("gallery_features", gf)  # finite?
        q_g, q_q, g_g = (pairwise_distance(a, b, metric) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
        dist = re_ranking(q_g, q_q, g_g, **(rerank_options or {}))
        return evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank, protocol=protocol,
                        chunk_size=chunk_size)

    q_pids, q_cams = q_pids.to(device), q_cams.to(device)
    keep, gallery = _protocol_gallery(g_pids, g_cams, protocol, device)
    if keep is not None:
        gf = gf.index_select(0, keep)
    qf, g_term = _prepare(qf, gf, metric)
    rows = _chunk_rows(chunk_size, len(qf), len(gf), _PRODUCT_ELEMENTS)
    score_rows = max(1, _SCORE_ELEMENTS // len(gf))
    scores = []
    for start in range(0, len(qf), rows):
        block = _distance_block(qf[start:start + rows], gf, metric, g_term)
        scores.append(_score_rows(block, q_pids[start:start + rows], q_cams[start:start + rows], gallery,
                                  protocol, score_rows))
    return _result(scores, int(max_rank), protocol)
