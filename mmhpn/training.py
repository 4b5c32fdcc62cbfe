"""The training loop: `train(config, run_dir)`, the paper's schedule, resumable every epoch.

`train` is SGD with momentum, a step learning-rate schedule (`learning_rate`), mixed
precision (bf16 autocast on CPUs and GPUs that support it, fp16 with a gradient scaler on
older GPUs; see `mmhpn.runtime`), channels_last, text progress bars, a per-epoch
``history.csv``, optional evaluation every N epochs, and a final evaluation written to
``metrics.json``. What each file of the run folder holds, and how it is written and read,
is `mmhpn.checkpoints`; the configuration is `mmhpn.config.TrainConfig`. The run *cache*
(which folder a configuration trains in, the finished marker, loading a finished run) is
`mmhpn.runs`; most users call `mmhpn.runs.train_or_load`.

Resuming: every epoch ends with a checkpoint holding the model, the optimizer (momentum
buffers), the gradient scaler, the history so far and every random number generator state
(Python, NumPy, torch CPU and CUDA). The training order of epoch ``e`` is drawn from a
generator seeded with ``seed + e``, so it does not depend on what happened before. Killing
a run loses at most the epoch in progress; on CPU in deterministic mode a resumed run ends
with exactly the weights and metrics of an uninterrupted one (tests/test_runs.py checks it).

Fine-tuning regimes (opt-in `TrainConfig` fields, for CPU budgets; see the fields' notes):

* ``val_fraction``: train on part of the training identities, score on the rest
  (`mmhpn.data.split_validation`); the test split is never read.
* ``init_from``: the trunk (stem..layer4, not the heads) of the pretraining run it names
  initialises this model, as the paper fine-tunes an ImageNet trunk. `train` takes that
  trunk's state (`trunk_state`); the run cache trains or loads the pretraining run before
  it starts this one (`mmhpn.runs.train_or_load`, outside this run's lock).
* ``freeze_below_layer4``: stem..layer3 get no gradients and keep BatchNorm in eval mode
  (their running statistics are the pretrained ones); SGD updates layer4 and the heads.
* ``feature_cache`` (with the freeze): layer3's output is computed once per training image
  and per mirror image, in eval mode under the run's precision, and every epoch trains
  layer4 + heads on those maps (`mmhpn.data.CachedFeatureLoader`, same batches as the image
  loader). Evaluations start from the query and gallery images' layer3 maps as well. With
  ``init_from``, the maps are shared by every run fine-tuned from the same pretraining run
  (`mmhpn.trunk_cache`, in ``<runs>/trunk-features/``): the first run of a build computes
  them, the others read them. The time it takes is counted in ``train_seconds``.
* ``half_size_epochs`` (progressive resizing, for the pretraining run): the first N epochs
  read the training images at half the height and width (a quarter of the pixels: the
  convolutions are size-agnostic, the heads pool), the rest at full size; every evaluation
  reads full-size images.

Multi-process training (`torchrun`): when `torch.distributed` is initialised, the model is
wrapped in DistributedDataParallel, each process sees its share of every epoch through a
`DistributedSampler`, ``batch_size`` is the *global* batch (split evenly over processes),
and only rank 0 writes files (see `mmhpn.distributed`).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm import tqdm

from mmhpn import distributed, trunk_cache
from mmhpn.checkpoints import (CHECKPOINT_FILE, load_resume_state, write_checkpoint, write_config, write_history,
                               write_metrics, write_model_file)
from mmhpn.config import TrainConfig, build_model_for, check_config, config_hash
from mmhpn.data import CachedFeatureLoader, ReIDDataset, build_train_loader, load_data, set_loader_epoch
from mmhpn.errors import ConfigError, TrainingInterrupted
from mmhpn.evaluation.model import evaluate_model
from mmhpn.losses import build_loss
from mmhpn.model import load_trunk_state
from mmhpn.runtime import (autocast, determinism, resolve_device, resolve_precision, seed_everything,
                           set_rng_state)


def evaluation_options(config: TrainConfig, precision: str) -> dict:
    """How a run's evaluations compute descriptors (`evaluate_model`'s options, less the device):
    what anything that must give the descriptors its metrics were computed from passes too
    (`mmhpn.runs.Run.descriptors`)."""
    return {"height": config.height, "width": config.width, "batch_size": max(config.batch_size, 64),
            "num_workers": config.num_workers, "precision": precision, "flip": config.eval_flip,
            "channels_last": config.channels_last}


@dataclass
class TrainResult:
    """What `train` returns: the per-epoch history and the final metrics."""

    history: pd.DataFrame
    metrics: dict
    resumed_from_epoch: int = 0
    stopped_early: bool = False


class StopTraining(Exception):
    """Raised by an `on_epoch_end` callback to stop after the current epoch's checkpoint."""


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The lr of 0-based `epoch`: ``lr * factor**k`` where k = decay epochs already passed.

    The paper's "0.01 after epoch 30" means epochs 31..60 (0-based 30..59) use 0.01.
    """
    passed = sum(epoch >= milestone for milestone in config.lr_decay_epochs)
    return config.lr * config.lr_decay_factor ** passed


def train_loader(config: TrainConfig, records, device: torch.device, images=None) -> torch.utils.data.DataLoader:
    """The loader `train` iterates: `mmhpn.data.build_train_loader` with `config`'s settings, this
    process's share (`images`: another loader's dataset, its decoded images shared)."""
    return build_train_loader(records, height=config.height, width=config.width, batch_size=config.batch_size,
                              sampler=config.sampler, num_instances=config.num_instances, seed=config.seed,
                              num_workers=config.num_workers, cache_images=config.cache_images,
                              pin_memory=device.type == "cuda", world_size=distributed.world_size(),
                              rank=distributed.rank(), images=images)


def load_training_data(config: TrainConfig) -> ReIDDataset:
    """The dataset `config` trains on (`mmhpn.data.load_data`), rank 0 first: it generates
    missing synthetic data while the other processes wait."""
    dataset = load_data(config) if distributed.is_main_process() else None
    distributed.barrier()
    return dataset or load_data(config)


def train(config: TrainConfig, run_dir: str | os.PathLike, *, trunk_state: dict | None = None,
          dataset: ReIDDataset | None = None, progress: bool = True, stop_after_epochs: int | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train `config` in `run_dir`, resuming from its checkpoint if there is one.

    Writes (rank 0 only) ``config.json``, ``checkpoint.pt`` after every epoch,
    ``history.csv``, and at the end ``model.pt`` (weights + config) and ``metrics.json``.
    It does not write the "finished" marker: that is `mmhpn.runs.train_or_load`'s job.
    The configuration is checked, the data read and the model and loss built before the
    folder is written, so a start that fails there leaves nothing behind.

    `trunk_state`: with ``config.init_from``, the state_dict of the pretraining run's model
    whose trunk starts this one (`mmhpn.runs.pretrained_trunk_state`); needed unless the run
    resumes from a checkpoint. `dataset`: the data `load_training_data` reads, when the
    caller has it already. Ctrl-C raises `mmhpn.errors.TrainingInterrupted` (a
    KeyboardInterrupt) saying how many epochs the checkpoint holds.

    `stop_after_epochs` (testing hook) stops once that many epochs are done in total, as an
    interruption would, after the checkpoint is written. `on_epoch_end(epoch, row)` is called
    after each epoch's checkpoint; it may raise `StopTraining` to stop the same way.
    """
    run_dir = Path(run_dir)
    check_config(config)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    is_main = distributed.is_main_process()
    dataset = dataset or load_training_data(config)
    num_classes = dataset.num_train_pids
    if config.feature_cache and distributed.world_size() > 1:
        raise ConfigError("feature_cache trains in one process; run without torchrun or set feature_cache=False")
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if config.init_from is not None and trunk_state is None and not checkpoint_path.exists():
        raise ConfigError(f"{run_dir} starts from the trunk of its init_from run: pass that run's state_dict "
                          "(trunk_state), as mmhpn.runs.train_or_load does")
    saved_epochs = None  # what the checkpoint on disk holds, once known (for Ctrl-C's line)
    try:
        with determinism(config.deterministic):
            seed_everything(config.seed)
            model = build_model_for(config, num_classes).to(device)
            if trunk_state is not None and not checkpoint_path.exists():
                load_trunk_state(model, trunk_state, source=f"the init_from run of {run_dir}")
            if config.freeze_below_layer4:
                for module in frozen_modules(model):
                    module.requires_grad_(False)
            if config.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                        momentum=config.momentum, weight_decay=config.weight_decay)
            scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
            criterion = build_loss(config.loss, config.gammas, config.single_stripe, num_scales=len(model.scales),
                                   scale_weights=config.scale_weights)
            # Only now the folder: a configuration, data or weights file that fails above left none.
            if is_main:
                run_dir.mkdir(parents=True, exist_ok=True)
                write_config(config, run_dir)
            distributed.barrier()

            start_epoch, history = 0, []
            saved_epochs = 0
            if checkpoint_path.exists():
                state = load_resume_state(checkpoint_path, config, map_location=device)
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                if state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
                start_epoch, history = int(state["epoch"]), list(state["history"])
                saved_epochs = start_epoch
                set_rng_state(state["rng"])
                if distributed.world_size() > 1:
                    # Every process restored rank 0's state; keep their streams distinct.
                    torch.manual_seed(config.seed * 1000 + start_epoch * 10 + distributed.rank())
            elif distributed.world_size() > 1:
                torch.manual_seed(config.seed + distributed.rank())

            # With a frozen trunk cached, evaluations start from the query/gallery images' layer3
            # maps too, computed once for every run fine-tuned from the same pretraining run, and
            # kept for this run's later evaluations (eval_every) instead of read again.
            cached_maps = trunk_cache.maps_source(model, config, device, precision,
                                                  run_dir.parent / trunk_cache.FOLDER)

            def evaluate_now() -> dict:
                return evaluate_model(model, dataset, **evaluation_options(config, precision), device=device,
                                      protocol=config.eval_protocol, progress=progress,
                                      layer3_maps=cached_maps if config.feature_cache else None)

            cache_seconds = 0.0
            if config.feature_cache:
                started = time.perf_counter()
                features, mirrored = cached_maps(dataset.train, True)
                loader = CachedFeatureLoader(features, mirrored, dataset.train, config.batch_size, config.sampler,
                                             config.num_instances, config.seed)
                forward = model.forward_from_layer3
                cache_seconds = time.perf_counter() - started
            else:
                net = distributed.wrap_model(model, device)
                loader = train_loader(config, dataset.train, device)
                forward = net
            # Progressive resizing: the first half_size_epochs read the same decoded images at half size.
            half_size_loader = None
            if start_epoch < config.half_size_epochs:
                half_height, half_width = config.half_size
                half_config = replace(config, height=half_height, width=half_width, half_size_epochs=0)
                half_size_loader = train_loader(half_config, dataset.train, device, images=loader.dataset)
            stopped_early = False
            for epoch in range(start_epoch, config.epochs):
                epoch_loader = half_size_loader if epoch < config.half_size_epochs else loader
                row = _train_one_epoch(model, forward, epoch_loader, criterion, optimizer, scaler, config, epoch,
                                       device, precision, progress and is_main)
                if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs:
                    if is_main:
                        scores = evaluate_now()
                        row.update({k: scores[k] for k in ("rank1", "rank5", "rank10", "mAP")})
                    distributed.barrier()
                history.append(row)
                if is_main:
                    write_checkpoint(run_dir, config, num_classes, model, optimizer, scaler, epoch + 1, history)
                    saved_epochs = epoch + 1
                    write_history(history, run_dir)
                distributed.barrier()
                try:
                    if on_epoch_end is not None:
                        on_epoch_end(epoch, row)
                    if stop_after_epochs is not None and epoch + 1 >= stop_after_epochs and epoch + 1 < config.epochs:
                        raise StopTraining
                except StopTraining:
                    stopped_early = True
                    break

            metrics: dict = {}
            if not stopped_early:
                if is_main:
                    metrics = evaluate_now()
                    metrics.update(precision=precision, device=device.type, world_size=distributed.world_size(),
                                   epochs=config.epochs, config_hash=config_hash(config),
                                   train_seconds=float(sum(r["seconds"] for r in history)) + cache_seconds)
                    if config.feature_cache:
                        metrics["feature_cache_seconds"] = cache_seconds
                    write_model_file(run_dir, config, num_classes, model)
                    write_history(history, run_dir)
                    write_metrics(metrics, run_dir)
                distributed.barrier()
    except KeyboardInterrupt as err:
        raise TrainingInterrupted(run_dir, saved_epochs, config.epochs) from err
    return TrainResult(history=pd.DataFrame(history), metrics=metrics, resumed_from_epoch=start_epoch,
                       stopped_early=stopped_early)


def frozen_modules(model) -> list[torch.nn.Module]:
    """The part of the trunk `freeze_below_layer4` freezes: stem, layer1, layer2, layer3."""
    return [model.stem, model.layer1, model.layer2, model.layer3]


def _train_one_epoch(model, forward, loader, criterion, optimizer, scaler, config: TrainConfig, epoch: int,
                     device: torch.device, precision: str, show_progress: bool) -> dict:
    lr = learning_rate(config, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    (forward if isinstance(forward, torch.nn.Module) else model).train()  # the DDP wrapper too
    if config.freeze_below_layer4:  # frozen BatchNorm: the pretrained running statistics, no updates
        for module in frozen_modules(model):
            module.eval()
    set_loader_epoch(loader, config.seed, epoch)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    # Sums kept on the device and read every few steps: .item() every step would stall a GPU.
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct stripes, stripes
    factor_sums = None  # PSL only: per scale, the sums over images of each image's factor and of its square
    images_seen = 0
    started = time.perf_counter()
    # One bar per epoch, left on screen: the finished bars read as the training log.
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not show_progress,
               leave=True, dynamic_ncols=True)
    for step, (images, pids, _camids) in enumerate(bar):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        pids = pids.to(device, non_blocking=True)
        with autocast(device, precision):
            outputs = forward(images)
            loss = criterion(outputs, pids)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            correct = sum((out.argmax(-1) == pids[:, None]).sum() for out in outputs)
            stripes = sum(out.shape[1] for out in outputs) * pids.shape[0]
            totals += torch.stack([loss.detach().double() * pids.shape[0], correct.double(),
                                   torch.tensor(float(stripes), dtype=torch.float64, device=device)])
            factors = getattr(criterion, "last_image_factors", None)
            if factors is not None:  # per scale: sum over images of each image's factor, and of its square
                batch_factors = torch.cat([factors.double().sum(0), (factors.double() ** 2).sum(0)])
                factor_sums = batch_factors if factor_sums is None else factor_sums + batch_factors
        images_seen += pids.shape[0]
        if show_progress and (step % 10 == 0 or step == len(loader) - 1):
            loss_sum, correct_sum, stripe_sum = totals.tolist()
            bar.set_postfix(loss=f"{loss_sum / images_seen:.3f}", stripe_acc=f"{correct_sum / stripe_sum:.3f}", lr=lr)
    bar.close()
    totals = distributed.all_reduce_sum(totals)
    loss_sum, correct_sum, stripe_sum = totals.tolist()
    images_total = images_seen * distributed.world_size()
    if images_total == 0:
        raise ConfigError("the training loader yielded no batch (fewer images than one batch per process?)")
    loss_value = loss_sum / images_total
    if not math.isfinite(loss_value):
        raise ConfigError(f"training diverged: the loss became {loss_value} in epoch {epoch + 1}; "
                          f"try a lower lr than {lr}")
    row = {"epoch": epoch + 1, "lr": lr, "loss": loss_value, "stripe_acc": correct_sum / stripe_sum,
           "seconds": time.perf_counter() - started, "images": images_total}
    if factor_sums is not None:  # psl_factor_<i>: the mean over the epoch's images; _sd_<i>: their spread
        sums, squares = distributed.all_reduce_sum(factor_sums).tensor_split(2)
        means = sums / images_total
        spreads = (squares / images_total - means ** 2).clamp_min(0).sqrt()
        row.update({f"psl_factor_{i}": value for i, value in enumerate(means.tolist())})
        row.update({f"psl_factor_sd_{i}": value for i, value in enumerate(spreads.tolist())})
    return row
