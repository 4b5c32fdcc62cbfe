"""The re-ID protocol: hand-computed cases, a plain reference loop, errors, features, re-ranking."""
import numpy as np
import pytest
import torch
from torch import nn

from mmhpn.errors import ConfigError
from mmhpn.evaluation import (ReIDResult, evaluate, evaluate_features, extract_features, pairwise_distance,
                              pool_multi_query, re_ranking)
from mmhpn.evaluation import protocol as protocol_module

OFFICIAL = "market1501-official"


def reference_scores(distmat, q_pids, g_pids, q_cams, g_cams, official=False):
    """Per-query AP and 0-based first-match rank, written plainly: one stable sort per query."""
    aps, firsts = [], []
    for i in range(len(q_pids)):
        junk = (g_pids == q_pids[i]) & (g_cams == q_cams[i])
        if official:
            junk |= g_pids == -1
        order = np.argsort(distmat[i][~junk], kind="stable")
        matches = (g_pids[~junk] == q_pids[i])[order]
        if not matches.any():
            aps.append(np.nan)
            firsts.append(-1)
            continue
        ranks = np.flatnonzero(matches)
        ap = 0.0
        for k, rank in enumerate(ranks, start=1):
            precision = k / (rank + 1)
            if official:  # trapezoid: mean of the precision just before and at the match
                before = (k - 1) / rank if rank > 0 else 1.0
                precision = (before + precision) / 2
            ap += precision / len(ranks)
        aps.append(ap)
        firsts.append(ranks[0])
    return np.array(aps), np.array(firsts)


def random_problem(seed, num_query=30, num_gallery=200, num_ids=8, num_cams=3, ties=False):
    rng = np.random.default_rng(seed)
    q_pids, q_cams = rng.integers(1, num_ids, num_query), rng.integers(0, num_cams, num_query)
    g_pids, g_cams = rng.integers(0, num_ids, num_gallery), rng.integers(0, num_cams, num_gallery)
    if ties:
        distmat = rng.integers(0, 6, (num_query, num_gallery)).astype(np.float32)
    else:
        distmat = rng.random((num_query, num_gallery)).astype(np.float32)
    return distmat, q_pids, g_pids, q_cams, g_cams


# ------------------------------------------------------------------------------------------
# Hand-computed cases

# One query (id 1, camera 0) against six gallery images, in gallery order:
#   0: id 1 cam 0 (junk: same id and camera)   d=0.1
#   1: id 2 cam 1                              d=0.2
#   2: id 1 cam 1 (true match)                 d=0.3
#   3: id 0 cam 1 (distractor: a negative)     d=0.4
#   4: id 1 cam 2 (true match)                 d=0.5
#   5: id 3 cam 0                              d=0.6
#   6: id 4 cam 0                              d=0.9
# Ranking without junk: [1, 2, 3, 4, 5, 6] -> true matches at ranks 2 and 4 (1-based).
# Toolbox AP = (1/2 + 2/4) / 2 = 0.5.  Trapezoid AP = ((0 + 1/2)/2 + (1/3 + 2/4)/2) / 2 = 1/3.
# Second query (id 4, camera 0): its only gallery image has its camera -> skipped.
# Third query (id 2, camera 0): gallery 1 nearest -> AP 1, rank 1.
G_PIDS = np.array([1, 2, 1, 0, 1, 3, 4])
G_CAMS = np.array([0, 1, 1, 1, 2, 0, 0])
Q_PIDS, Q_CAMS = np.array([1, 4, 2]), np.array([0, 0, 0])
DISTMAT = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9],
                    [0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.7],
                    [0.3, 0.1, 0.2, 0.4, 0.5, 0.6, 0.7]])


def test_hand_computed_toolbox():
    result = evaluate(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5)
    assert result.num_queries == 2 and result.num_skipped == 1
    assert result.query_ap[0] == pytest.approx(0.5)
    assert np.isnan(result.query_ap[1])
    assert result.query_ap[2] == pytest.approx(1.0)
    assert result.mAP == pytest.approx(0.75)
    np.testing.assert_allclose(result.cmc, [0.5, 1.0, 1.0, 1.0, 1.0])
    assert result.protocol == "toolbox"
    assert result.as_dict() == {"rank1": 0.5, "rank5": 1.0, "mAP": pytest.approx(0.75), "num_queries": 2,
                                "num_skipped": 1, "protocol": "toolbox"}


def test_hand_computed_trapezoid_differs_from_toolbox():
    result = evaluate(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5, protocol=OFFICIAL)
    assert result.query_ap[0] == pytest.approx(1 / 3)
    assert result.query_ap[2] == pytest.approx(1.0)
    assert result.mAP == pytest.approx((1 / 3 + 1) / 2)
    np.testing.assert_allclose(result.cmc, [0.5, 1.0, 1.0, 1.0, 1.0])  # same CMC
    assert result.protocol == OFFICIAL


def test_official_protocol_treats_id_minus_one_as_junk():
    # Gallery: id -1 at d=0.1, then the true match at d=0.2.
    args = (np.array([[0.1, 0.2]]), [1], [-1, 1], [0], [1, 1])
    assert evaluate(*args).query_ap[0] == pytest.approx(0.5)  # toolbox: -1 is a negative
    assert evaluate(*args, protocol=OFFICIAL).query_ap[0] == pytest.approx(1.0)  # official: junk


def test_ties_are_broken_by_gallery_index():
    # All four gallery images at the same distance: the stable order is the gallery order.
    g_pids, g_cams = np.array([2, 1, 1, 3]), np.array([1, 1, 2, 1])
    distmat = np.full((1, 4), 0.5, dtype=np.float32)
    result = evaluate(distmat, [1], g_pids, [0], g_cams, max_rank=4)
    assert result.query_ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result.query_first_match[0] == 1
    # Same distances, the true matches listed first in the gallery: now ranked first.
    order = [1, 2, 0, 3]
    reordered = evaluate(distmat, [1], g_pids[order], [0], g_cams[order], max_rank=4)
    assert reordered.query_ap[0] == pytest.approx(1.0)
    # A tie between a true match and a junk image changes nothing: junk is removed.
    result = evaluate(np.array([[0.5, 0.5, 0.7]]), [1], [1, 1, 2], [0], [0, 1, 1])
    assert result.query_ap[0] == pytest.approx(1.0)


def test_perfect_ranking_scores_one():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(1)
    perfect = np.where(q_pids[:, None] == g_pids[None, :], 0.0, 1.0) + 0.01 * distmat
    for protocol in ("toolbox", OFFICIAL):
        result = evaluate(perfect, q_pids, g_pids, q_cams, g_cams, protocol=protocol)
        assert result.mAP == pytest.approx(1.0)
        np.testing.assert_allclose(result.cmc, 1.0)


# ------------------------------------------------------------------------------------------
# Properties against the plain reference


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("protocol", ["toolbox", OFFICIAL])
def test_matches_reference_chunked_and_unchunked(ties, protocol, monkeypatch):
    for seed in range(2):
        distmat, q_pids, g_pids, q_cams, g_cams = random_problem(seed, ties=ties)
        if protocol == OFFICIAL:
            g_pids[::7] = -1
        ap, first = reference_scores(distmat, q_pids, g_pids, q_cams, g_cams, official=protocol == OFFICIAL)
        results = []
        # Both search paths (compacted "near" images, or the whole block) and several chunkings.
        for dense_fraction, chunk_size in ((0.0, None), (0.0, 7), (1.0, None), (1.0, 1)):
            monkeypatch.setattr(protocol_module, "_DENSE_FRACTION", dense_fraction)
            result = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, protocol=protocol,
                              chunk_size=chunk_size)
            np.testing.assert_array_equal(result.query_first_match, first)
            np.testing.assert_allclose(result.query_ap, ap, rtol=1e-12, equal_nan=True)
            results.append(result)
        scored = first >= 0
        assert results[0].mAP == pytest.approx(ap[scored].mean())
        expected_cmc = [(first[scored] < k).mean() for k in range(1, 21)]
        for result in results:
            np.testing.assert_allclose(result.cmc, expected_cmc)
            assert result.num_skipped == int((~scored).sum())


def test_gallery_permutation_changes_nothing():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(5)
    perm = np.random.default_rng(0).permutation(len(g_pids))
    a = evaluate(distmat, q_pids, g_pids, q_cams, g_cams)
    b = evaluate(distmat[:, perm], q_pids, g_pids[perm], q_cams, g_cams[perm])
    np.testing.assert_array_equal(a.cmc, b.cmc)
    np.testing.assert_allclose(a.query_ap, b.query_ap, equal_nan=True)
    assert a.mAP == b.mAP


def test_evaluate_features_cosine_and_euclidean(monkeypatch):
    rng = np.random.default_rng(3)
    _, q_pids, g_pids, q_cams, g_cams = random_problem(3, num_query=12, num_gallery=60)
    centres = rng.normal(size=(10, 16))
    qf = (centres[q_pids] + rng.normal(size=(12, 16))).astype(np.float32)
    gf = (centres[g_pids] + rng.normal(size=(60, 16))).astype(np.float32)
    qn, gn = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
    cosine = 1 - qn @ gn.T
    euclidean = np.sqrt(((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1))
    for metric, distmat in (("cosine", cosine), ("euclidean", euclidean)):
        ap, first = reference_scores(distmat, q_pids, g_pids, q_cams, g_cams)
        # numpy or torch input; product blocks of all, or 5, queries; scored 2 rows at a time or all
        for feats, chunk_size, score_elements in (((qf, gf), None, 1 << 22), ((qf, gf), 5, 130),
                                                  ((torch.from_numpy(qf), torch.from_numpy(gf)), None, 130)):
            monkeypatch.setattr(protocol_module, "_SCORE_ELEMENTS", score_elements)
            result = evaluate_features(*feats, q_pids, g_pids, q_cams, g_cams, metric=metric,
                                       chunk_size=chunk_size)
            np.testing.assert_array_equal(result.query_first_match, first)
            np.testing.assert_allclose(result.query_ap, ap, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(pairwise_distance(qf, gf, metric).numpy(), distmat, atol=1e-4)


def test_scoring_leaves_the_thread_count_alone():
    threads = torch.get_num_threads()
    evaluate(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    assert torch.get_num_threads() == threads


def test_result_is_frozen_and_rank_checks_k():
    result = evaluate(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=3)
    assert isinstance(result, ReIDResult)
    assert result.rank(1) == 0.5 and len(result.cmc) == 3
    with pytest.raises(Exception):
        result.mAP = 1.0
    with pytest.raises(ConfigError, match="1..3"):
        result.rank(4)


# ------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("args, message", [
    ((np.zeros((3, 7)), [1, 2], G_PIDS, [0, 0], G_CAMS), r"distmat has shape \(3, 7\).*2 query labels"),
    ((DISTMAT, Q_PIDS, G_PIDS, [0, 0], G_CAMS), "query_camids has length 2 but query_pids has length 3"),
    ((DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS[:5]), "gallery_camids has length 5 but gallery_pids has length 7"),
    ((np.zeros((3, 0)), Q_PIDS, [], Q_CAMS, []), "empty gallery"),
    ((np.zeros((0, 7)), [], G_PIDS, [], G_CAMS), "empty query"),
    ((np.zeros(7), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS), "distmat must be 2-D"),
    ((np.where(DISTMAT > 0.55, np.nan, DISTMAT), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS), "NaN"),
    ((DISTMAT, [5, 5, 5], G_PIDS, Q_CAMS, G_CAMS), "none of the 3 queries has a true match"),
])
def test_clear_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        evaluate(*args)


def test_option_errors():
    with pytest.raises(ConfigError, match="unknown protocol"):
        evaluate(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, protocol="cuhk")
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate_features(np.ones((3, 4)), np.ones((7, 4)), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, metric="l1")
    with pytest.raises(ConfigError, match="query_features has 2 rows but query_pids has length 3"):
        evaluate_features(np.ones((2, 4)), np.ones((7, 4)), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    with pytest.raises(ConfigError, match="4-d but gallery_features are 5-d"):
        evaluate_features(np.ones((3, 4)), np.ones((7, 5)), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    with pytest.raises(ConfigError):  # ConfigError is a ValueError
        evaluate(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=0)
    assert issubclass(ConfigError, ValueError)


# ------------------------------------------------------------------------------------------
# Multiple query


def test_pool_multi_query_mean_and_max():
    mq = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 9.0]])
    mq_pids, mq_cams = [7, 7, 7, 8], [0, 0, 1, 0]
    pooled, pids, cams = pool_multi_query(mq, mq_pids, mq_cams, [7, 8, 7], [0, 0, 1])
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 1.0], [0.0, 9.0], [5.0, 5.0]]))
    np.testing.assert_array_equal(pids, [7, 8, 7])
    np.testing.assert_array_equal(cams, [0, 0, 1])
    pooled, _, _ = pool_multi_query(mq.numpy(), mq_pids, mq_cams, [7], [0], reduce="max")
    torch.testing.assert_close(pooled, torch.tensor([[3.0, 2.0]]))


def test_pool_multi_query_missing_query_is_an_error():
    with pytest.raises(ConfigError, match=r"1 of 2 queries have no multi-query image.*id 9, camera 0"):
        pool_multi_query(np.ones((2, 3)), [7, 7], [0, 1], [7, 9], [0, 0])
    with pytest.raises(ConfigError, match="unknown reduce"):
        pool_multi_query(np.ones((2, 3)), [7, 7], [0, 1], [7], [0], reduce="median")


def test_multi_query_scores_through_evaluate_features():
    # Single query images are noisy; pooling three images of the same id/camera recovers id 1.
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    query = np.array([[0.2, 1.0]], dtype=np.float32)  # looks like id 2
    mq = np.array([[0.2, 1.0], [1.0, 0.1], [1.0, 0.0]], dtype=np.float32)
    single = evaluate_features(query, gallery, [1], [1, 2], [0], [1, 1])
    pooled, pids, cams = pool_multi_query(mq, [1, 1, 1], [0, 0, 0], [1], [0])
    multi = evaluate_features(pooled, gallery, pids, [1, 2], cams, [1, 1])
    assert single.rank(1) == 0.0 and multi.rank(1) == 1.0


# ------------------------------------------------------------------------------------------
# Feature extraction


class TinyNet(nn.Module):
    """Not flip-invariant: weights differ along the image width."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2 * 3 * 4, 5)
        self.dropout = nn.Dropout(0.5)  # eval mode must switch it off

    def forward(self, x):
        return self.dropout(self.linear(x.flatten(1)))


def test_extract_features_flip_normalize_and_mode():
    torch.manual_seed(0)
    model = TinyNet().train()
    images = torch.randn(5, 2, 3, 4)
    loader = [(images[:3], torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1])), (images[3:], [4, 5], [1, 2])]
    feats, pids, cams = extract_features(model, loader, flip=False, progress=False)
    assert model.training  # mode restored
    with torch.no_grad():
        plain = model.linear(images.flatten(1))
        flipped = model.linear(torch.flip(images, dims=[3]).flatten(1))
    torch.testing.assert_close(feats, plain)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    np.testing.assert_array_equal(pids, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(cams, [0, 0, 1, 1, 2])
    feats, _, _ = extract_features(model, loader, flip=True, progress=False)
    torch.testing.assert_close(feats, (plain + flipped) / 2)
    feats, _, _ = extract_features(model, loader, normalize=True, progress=False)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(5))


def test_extract_features_errors_and_text_progress_bar():
    import tqdm.std

    from mmhpn.evaluation import features

    assert features.tqdm is tqdm.std.tqdm  # text bars in executed notebooks, not widgets
    with pytest.raises(ConfigError, match="no batches"):
        extract_features(TinyNet(), [], progress=False)
    with pytest.raises(ConfigError, match=r"\(batch, dims\)"):
        extract_features(nn.Identity(), [(torch.zeros(2, 2, 3, 4), [1, 2], [0, 0])], progress=False)


# ------------------------------------------------------------------------------------------
# Re-ranking


def rerank_case():
    """1-D points. The query (id 1, at 0) is nearest to x (id 2, at -0.9), but x's own
    neighbours are its id's tight cluster, while the query's true matches (1.0..1.15) have
    the query among their neighbours: a wrong rank-1 that k-reciprocal re-ranking fixes."""
    q = np.array([0.0])
    g = np.array([-0.9, -1.3, -1.35, -1.4, -1.45, 1.0, 1.05, 1.1, 1.15])
    g_pids, g_cams = np.array([2, 2, 2, 2, 2, 1, 1, 1, 1]), np.array([1, 2, 2, 2, 2, 1, 1, 1, 1])
    dist = lambda a, b: np.abs(a[:, None] - b[None, :])  # noqa: E731
    return dist(q, g), dist(q, q), dist(g, g), g_pids, g_cams


def test_re_ranking_fixes_a_constructed_wrong_rank1():
    q_g, q_q, g_g, g_pids, g_cams = rerank_case()
    before = evaluate(q_g, [1], g_pids, [0], g_cams)
    reranked = re_ranking(q_g, q_q, g_g, k1=4, k2=1, lambda_value=0.3)
    after = evaluate(reranked, [1], g_pids, [0], g_cams)
    assert before.rank(1) == 0.0 and after.rank(1) == 1.0
    assert after.mAP == pytest.approx(1.0)
    assert reranked.shape == (1, 9) and reranked.dtype == np.float32
    # deterministic, and lambda=1 gives back the original distances
    np.testing.assert_array_equal(reranked, re_ranking(q_g, q_q, g_g, k1=4, k2=1, lambda_value=0.3))
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, k1=4, k2=1, lambda_value=1.0), q_g, rtol=1e-6)


def test_re_ranking_with_query_expansion_and_through_evaluate_features():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 8))
    q_pids, g_pids = np.arange(6), np.repeat(np.arange(6), 5)
    qf, gf = centres[q_pids] + 0.5 * rng.normal(size=(6, 8)), centres[g_pids] + 0.5 * rng.normal(size=(30, 8))
    q_cams, g_cams = np.zeros(6, int), np.ones(30, int)
    q_g, q_q, g_g = (pairwise_distance(a, b).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    reranked = re_ranking(q_g, q_q, g_g, k1=6, k2=3)
    assert reranked.shape == (6, 30) and np.all(np.isfinite(reranked))
    expected = evaluate(reranked, q_pids, g_pids, q_cams, g_cams)
    result = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, rerank=True,
                               rerank_options={"k1": 6, "k2": 3})
    np.testing.assert_allclose(result.query_ap, expected.query_ap)
    with pytest.raises(ConfigError, match="q_q_dist must be"):
        re_ranking(q_g, q_q[:3], g_g)


def test_non_finite_features_are_an_error():
    gallery = np.ones((7, 4), dtype=np.float32)
    gallery[3, 1] = np.nan
    for rerank in (False, True):
        with pytest.raises(ConfigError, match=r"gallery_features holds NaN or infinite values \(first in row 3\)"):
            evaluate_features(np.ones((3, 4)), gallery, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, rerank=rerank)
