"""Scoring a model on a dataset's query and gallery: `evaluate_model`.

What training's evaluations, `mmhpn evaluate` and the book call: descriptors of the query
and gallery images (`mmhpn.evaluation.features`) under the chosen precision, scored by the
re-ID protocol (`mmhpn.evaluation.protocol`), and the multiple-query scores when the
dataset has gt_bbox images.
"""
from __future__ import annotations

import torch

from mmhpn.data import build_eval_loader
from mmhpn.errors import ConfigError
from mmhpn.evaluation.features import extract_features, pool_multi_query
from mmhpn.evaluation.protocol import evaluate_features
from mmhpn.runtime import autocast


def evaluate_model(model: torch.nn.Module, dataset, *, height: int, width: int, batch_size: int = 128,
                   device: torch.device | str = "cpu", num_workers: int = 0, precision: str = "fp32",
                   flip: bool = False, protocol: str = "toolbox", rerank: bool = False,
                   channels_last: bool = False, progress: bool = True) -> dict:
    """Single-query scores, and multiple-query scores when the dataset has gt_bbox images.

    Returns a JSON-ready dict: rank1, rank5, rank10, mAP (fractions), num_queries,
    num_skipped, protocol, dataset, flip, rerank, and "multi_query" (the same scores, with
    the query features pooled over each query's gt_bbox images, Market-1501's setting).
    """
    device = torch.device(device)

    def features(records):
        loader = build_eval_loader(records, height, width, batch_size, num_workers,
                                   pin_memory=device.type == "cuda")
        with autocast(device, precision):
            return extract_features(model, loader, device, flip=flip, progress=progress,
                                    channels_last=channels_last)

    def score(qf, gf, q_pids, g_pids, q_camids, g_camids) -> dict:
        result = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids,
                                   protocol=protocol, rerank=rerank)
        return result.as_dict()

    # Evaluation must not change the training RNG stream (loaders draw their seeds from it).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        qf, q_pids, q_camids = features(dataset.query)
        gf, g_pids, g_camids = features(dataset.gallery)
        metrics = {**score(qf, gf, q_pids, g_pids, q_camids, g_camids), "dataset": dataset.name,
                   "flip": flip, "rerank": rerank}
        if dataset.multi_query:
            mf, m_pids, m_camids = features(dataset.multi_query)
            try:
                pooled, p_pids, p_camids = pool_multi_query(mf, m_pids, m_camids, q_pids, q_camids)
            except ConfigError as err:  # some query has no gt_bbox image: say so, keep single query
                metrics["multi_query"] = {"error": str(err)}
            else:
                metrics["multi_query"] = score(pooled, gf, p_pids, g_pids, p_camids, g_camids)
    return metrics
