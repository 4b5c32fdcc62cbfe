"""Test descriptors: extraction from a model and a loader, and multiple-query pooling."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm  # the text bar: executed notebooks store text, not widgets

from mmhpn.errors import ConfigError

REDUCTIONS = ("mean", "max")


def _as_numpy_labels(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy().astype(np.int64).reshape(-1)
    return np.asarray(values, dtype=np.int64).reshape(-1)


def extract_features(model: torch.nn.Module, loader, device="cpu", flip: bool = False, progress: bool = True,
                     normalize: bool = False, channels_last: bool = False, amp: bool = False):
    """Descriptors of every image a loader yields, as ``(features, pids, camids)``.

    ``loader`` yields ``(images, pids, camids)`` batches (as `mmhpn.data.build_eval_loader`
    does); the model, in eval mode, maps images to (batch, dims) descriptors. ``flip=True``
    averages each descriptor with that of the horizontally flipped image. ``normalize``
    L2-normalises the result. ``amp`` runs the model under `torch.autocast` for ``device``.
    Returns float32 features on the CPU and int64 numpy label arrays; the model's training
    flag is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    features, pids, camids = [], [], []
    autocast = torch.autocast(device.type) if amp else contextlib.nullcontext()
    try:
        with torch.inference_mode(), autocast:
            for batch in tqdm(loader, desc="features", unit="batch", disable=not progress, leave=False):
                if not isinstance(batch, (tuple, list)) or len(batch) != 3:
                    raise ConfigError("the loader must yield (images, pids, camids) batches; "
                                      f"got {type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}")
                images, batch_pids, batch_camids = batch
                images = images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                output = model(images)
                if not isinstance(output, torch.Tensor) or output.ndim != 2 or len(output) != len(images):
                    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                    raise ConfigError(f"the model must return (batch, dims) descriptors in eval mode; got {shape} "
                                      f"for a batch of {len(images)} images")
                if flip:
                    output = (output + model(torch.flip(images, dims=[3]))) / 2
                output = output.float()
                if normalize:
                    output = F.normalize(output, dim=1)
                features.append(output.cpu())
                pids.append(_as_numpy_labels(batch_pids))
                camids.append(_as_numpy_labels(batch_camids))
    finally:
        model.train(was_training)
    if not features:
        raise ConfigError("the loader yielded no batches; expected at least one image")
    return torch.cat(features), np.concatenate(pids), np.concatenate(camids)


def pool_multi_query(mq_features, mq_pids, mq_camids, query_pids, query_camids, reduce: str = "mean"):
    """Market-1501 multiple query: one descriptor per query from its id's same-camera images.

    For each query, the features of all multi-query (``gt_bbox``) images with the query's
    id and camera are pooled (element-wise mean, or max) into one descriptor, as in the
    official Market-1501 code. Returns ``(pooled float32 tensor (num_query, dims),
    query_pids, query_camids)`` (the labels as int64 numpy arrays, for `evaluate_features`).
    """
    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown reduce {reduce!r}; expected one of {REDUCTIONS}")
    feats = mq_features.detach().cpu() if isinstance(mq_features, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(mq_features))
    feats = feats.float()
    if feats.ndim != 2:
        raise ConfigError(f"mq_features must be 2-D (images, dims), got shape {tuple(feats.shape)}")
    m_pids, m_cams = _as_numpy_labels(mq_pids), _as_numpy_labels(mq_camids)
    q_pids, q_cams = _as_numpy_labels(query_pids), _as_numpy_labels(query_camids)
    if not len(feats) == len(m_pids) == len(m_cams):
        raise ConfigError(f"mq_features has {len(feats)} rows, mq_pids length {len(m_pids)}, mq_camids length "
                          f"{len(m_cams)}; expected one id and one camera per multi-query image")
    if len(q_pids) != len(q_cams):
        raise ConfigError(f"query_pids has length {len(q_pids)} but query_camids has length {len(q_cams)}")
    if len(feats) == 0:
        raise ConfigError("no multi-query images: mq_features is empty")

    groups, group_of = np.unique(np.stack([m_pids, m_cams], axis=1), axis=0, return_inverse=True)
    group_of = torch.from_numpy(group_of.reshape(-1).astype(np.int64))
    lookup = {(int(p), int(c)): g for g, (p, c) in enumerate(groups)}
    query_group = np.array([lookup.get((int(p), int(c)), -1) for p, c in zip(q_pids, q_cams)], dtype=np.int64)
    missing = np.flatnonzero(query_group < 0)
    if len(missing):
        examples = ", ".join(f"query {i} (id {q_pids[i]}, camera {q_cams[i]})" for i in missing[:3])
        raise ConfigError(f"{len(missing)} of {len(q_pids)} queries have no multi-query image with their id and "
                          f"camera, e.g. {examples}; expected gt_bbox images for every query")

    index = group_of[:, None].expand_as(feats)
    pooled = torch.zeros(len(groups), feats.shape[1])
    if reduce == "mean":
        pooled.scatter_add_(0, index, feats)
        pooled /= torch.bincount(group_of, minlength=len(groups)).clamp(min=1)[:, None].float()
    else:
        pooled.scatter_reduce_(0, index, feats, reduce="amax", include_self=False)
    return pooled[torch.from_numpy(query_group)], q_pids, q_cams
