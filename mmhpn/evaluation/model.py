"""Scoring a model on a dataset's query and gallery: `evaluate_model`.

What training's evaluations, `mmhpn evaluate` and the book call: descriptors of the query
and gallery images (`model_descriptors`, `mmhpn.evaluation.features`) under the chosen precision, scored by the
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
                   channels_last: bool = False, progress: bool = True, layer3_maps=None) -> dict:
    """Single-query scores, and multiple-query scores when the dataset has gt_bbox images.

    `layer3_maps(records, mirrored)` (optional; a frozen trunk's cached maps,
    `mmhpn.trunk_cache`) returns the ``(maps, mirror maps or None)`` of the records' images:
    the descriptors are then computed from them by layer4 and the heads
    (``model.forward_from_layer3``), which gives the full model's descriptors without
    running the frozen part again. With `flip`, the mirror images' descriptors come from
    the mirror maps.

    Returns a JSON-ready dict: rank1, rank5, rank10, mAP (fractions), num_queries,
    num_skipped, protocol, dataset, flip, rerank, and "multi_query" (the same scores, with
    the query features pooled over each query's gt_bbox images, Market-1501's setting).
    """
    device = torch.device(device)

    def features(records):
        return model_descriptors(model, records, height=height, width=width, batch_size=batch_size, device=device,
                                 num_workers=num_workers, precision=precision, flip=flip,
                                 channels_last=channels_last, progress=progress, layer3_maps=layer3_maps)

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


def model_descriptors(model: torch.nn.Module, records, *, height: int, width: int, batch_size: int = 128,
                      device: torch.device | str = "cpu", num_workers: int = 0, precision: str = "fp32",
                      flip: bool = False, channels_last: bool = False, progress: bool = True, layer3_maps=None):
    """``(descriptors, pids, camids)`` of a split's records, as `evaluate_model` scores them
    (the same options; from `layer3_maps` when given)."""
    device = torch.device(device)
    if layer3_maps is not None:
        return _features_from_maps(model, records, layer3_maps, batch_size, device, precision, flip,
                                   channels_last, progress)
    loader = build_eval_loader(records, height, width, batch_size, num_workers, pin_memory=device.type == "cuda")
    with autocast(device, precision):
        return extract_features(model, loader, device, flip=flip, progress=progress, channels_last=channels_last)


class _FromLayer3(torch.nn.Module):
    """`model` seen from layer3's output: ``forward`` is ``model.forward_from_layer3``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, maps: torch.Tensor):
        return self.model.forward_from_layer3(maps)


def _features_from_maps(model, records, layer3_maps, batch_size: int, device: torch.device, precision: str,
                        flip: bool, channels_last: bool, progress: bool):
    """`extract_features` over cached layer3 maps (and their mirror maps when `flip`)."""
    maps, mirrored = layer3_maps(records, flip)
    pids = torch.tensor([r.pid for r in records], dtype=torch.int64)
    camids = torch.tensor([r.camid for r in records], dtype=torch.int64)
    head = _FromLayer3(model)

    def extract(source: torch.Tensor):
        batches = [(source[i:i + batch_size], pids[i:i + batch_size], camids[i:i + batch_size])
                   for i in range(0, len(records), batch_size)]
        with autocast(device, precision):
            return extract_features(head, batches, device, progress=progress, channels_last=channels_last)

    result, result_pids, result_camids = extract(maps)
    if flip:
        result = (result + extract(mirrored)[0]) / 2
    return result, result_pids, result_camids
