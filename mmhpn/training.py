"""The training engine: one configuration object, the paper's schedule, checkpoints, resume.

This module owns

* `TrainConfig` - every setting a run depends on, saved into the run folder as JSON and
  hashed (`config_hash`) so that a run folder, a checkpoint and a configuration can be
  matched;
* the profiles `paper`, `demo` and `smoke` (`PROFILES`, `make_config`);
* the training loop `train(config, run_dir)`: SGD with momentum, a step learning-rate
  schedule, mixed precision (bf16 autocast on CPUs and GPUs that support it, fp16 with a
  gradient scaler on older GPUs), channels_last, text progress bars, a per-epoch
  ``history.csv``, optional evaluation every N epochs, and a final evaluation written to
  ``metrics.json``;
* checkpoints: written atomically every epoch (temp file + `os.replace`), read back with
  ``torch.load(weights_only=True)``; a checkpoint made for another configuration is refused.

The run *cache* (which folder a configuration trains in, the "finished" marker, loading a
finished run) lives in `mmhpn.runs`; most users call `mmhpn.runs.train_or_load`.

Resuming: every epoch ends with a checkpoint holding the model, the optimizer (momentum
buffers), the gradient scaler, the history so far and every random number generator state
(Python, NumPy, torch CPU and CUDA). The training order of epoch ``e`` is drawn from a
generator seeded with ``seed + e``, so it does not depend on what happened before. Killing
a run loses at most the epoch in progress; on CPU in deterministic mode a resumed run ends
with exactly the weights and metrics of an uninterrupted one (tests/test_runs.py checks it).

Multi-process training (`torchrun`): when `torch.distributed` is initialised, the model is
wrapped in DistributedDataParallel, each process sees its share of every epoch through a
`DistributedSampler`, ``batch_size`` is the *global* batch (split evenly over processes),
and only rank 0 writes files (see `mmhpn.distributed`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mmhpn import distributed, versions
from mmhpn.errors import CheckpointError, ConfigError
from mmhpn.model import PRESETS as MODEL_PRESETS

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = 1
RESUME_KEYS = ("epoch", "optimizer", "history", "rng")  # what checkpoint.pt has beyond model.pt

LOSSES = ("softmax", "psl")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SAMPLERS = ("shuffle", "pk")  # mmhpn.data: plain shuffling (paper) or P x K identity batches
EVAL_PROTOCOLS = ("toolbox", "market1501-official")  # mmhpn.evaluation.PROTOCOLS


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. The defaults are the paper's Sec. 4.2 settings.

    Fields left out of `config_hash` (they do not change the trained weights or the final
    metrics): ``profile`` and ``name`` (labels), ``data_root`` (where the data lives, not
    which data: a dataset is identified by ``dataset`` and, for synthetic data, by
    ``synthetic_preset`` and ``synthetic_seed``), ``device``, ``num_workers``,
    ``cache_images`` (the cached pipeline gives identical tensors) and ``eval_every``
    (intermediate evaluations run under a forked RNG and only add columns to the history). Fields that cannot matter for a setting are also normalised away:
    the synthetic preset/seed for real datasets, the PSL gammas/single-stripe rule for the
    softmax loss, ``num_instances`` for the plain shuffling sampler. ``precision="auto"`` is
    hashed as written: it resolves per machine (bf16 where supported), which is recorded
    in ``metrics.json``.
    """

    # labels (not hashed)
    profile: str = "paper"
    name: str = ""
    # data
    dataset: str = "market1501"
    data_root: str = "data/market1501"
    synthetic_preset: str = "demo"
    synthetic_seed: int = 0
    # model (see mmhpn.model.build_model)
    preset: str = "mmhpn"
    layout: dict | None = None
    backbone: str = "resnet50"
    pooling: str = "aps"
    pretrained: str | None = "imagenet"
    # loss (see mmhpn.losses.build_loss)
    loss: str = "softmax"
    gammas: tuple | None = (0.3, 0.5, 1.5, 2.0)
    single_stripe: str = "ce"
    # input and sampling
    height: int = 384
    width: int = 128
    batch_size: int = 64
    sampler: str = "shuffle"
    num_instances: int = 4
    # schedule: SGD with momentum; lr multiplied by lr_decay_factor at each lr_decay_epochs entry
    epochs: int = 60
    lr: float = 0.1
    lr_decay_epochs: tuple = (30,)
    lr_decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # reproducibility and speed
    seed: int = 0
    precision: str = "auto"
    deterministic: bool = False
    channels_last: bool = True
    # evaluation
    eval_every: int = 0
    eval_flip: bool = False
    eval_protocol: str = "toolbox"
    # machine (not hashed)
    num_workers: int = 0
    cache_images: bool = False  # decode images once into memory (same tensors, faster epochs)
    device: str = "auto"

    def __post_init__(self) -> None:
        # Normalise JSON-ish values (lists from a JSON file or the command line) to tuples.
        object.__setattr__(self, "lr_decay_epochs", tuple(int(e) for e in self.lr_decay_epochs))
        if self.gammas is not None:
            object.__setattr__(self, "gammas", tuple(float(g) for g in self.gammas))
        if self.layout is not None:
            if not isinstance(self.layout, dict):
                raise ConfigError(f"layout must be a dict {{tap: stripe counts}} or None, got {self.layout!r}")
            layout = {str(tap): tuple(counts) if isinstance(counts, (list, tuple)) else (counts,)
                      for tap, counts in self.layout.items()}
            object.__setattr__(self, "layout", layout)
        self._validate()

    def _validate(self) -> None:
        def choice(name: str, options: tuple) -> None:
            if getattr(self, name) not in options:
                raise ConfigError(f"{name} must be one of {list(options)}, got {getattr(self, name)!r}")

        def positive(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
            if not ok:
                raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")

        choice("loss", LOSSES)
        choice("preset", tuple(MODEL_PRESETS))
        choice("precision", PRECISIONS)
        choice("sampler", SAMPLERS)
        choice("eval_protocol", EVAL_PROTOCOLS)
        for name in ("height", "width", "batch_size", "epochs", "num_instances"):
            positive(name)
        for name in ("eval_every", "num_workers", "seed", "synthetic_seed"):
            positive(name, allow_zero=True)
        for name in ("lr", "lr_decay_factor"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("momentum", "weight_decay"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if any(e < 1 for e in self.lr_decay_epochs):
            raise ConfigError(f"lr_decay_epochs must be epoch numbers >= 1, got {list(self.lr_decay_epochs)}")
        if self.sampler == "pk" and self.batch_size % self.num_instances:
            raise ConfigError(f"the pk sampler needs batch_size ({self.batch_size}) to be a multiple of "
                              f"num_instances ({self.num_instances})")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict of all fields (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The inverse of `to_dict`; unknown keys raise `ConfigError`."""
        _check_field_names(values)
        return cls(**values)

    def hashed_fields(self) -> dict:
        """The fields `config_hash` covers, with settings that cannot matter normalised away."""
        values = {k: v for k, v in self.to_dict().items() if k not in UNHASHED_FIELDS}
        if self.dataset != "synthetic":
            values["synthetic_preset"] = values["synthetic_seed"] = None
        if self.loss == "softmax":
            values["gammas"] = values["single_stripe"] = None
        if self.sampler == "shuffle":
            values["num_instances"] = None
        # issue 14: hash what the code computes too, not only the fields (see mmhpn.versions).
        values["training_semantics_version"] = versions.TRAINING_SEMANTICS_VERSION
        values["synthetic_format_version"] = (versions.synthetic_format_version()
                                              if self.dataset == "synthetic" else None)
        return values

    @property
    def hash(self) -> str:
        return config_hash(self)

    @property
    def run_name(self) -> str:
        """The folder-name prefix: `name` if set, else profile-preset-loss."""
        raw = self.name or f"{self.profile}-{self.preset}-{self.loss}"
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in raw)


UNHASHED_FIELDS = frozenset({"profile", "name", "data_root", "device", "num_workers", "cache_images", "eval_every"})


def config_hash(config: TrainConfig) -> str:
    """sha256 (hex) of the canonical JSON of the result-affecting fields (see `TrainConfig`)."""
    canonical = json.dumps(config.hashed_fields(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def config_differences(stored: dict, config: TrainConfig) -> list[str]:
    """Human-readable 'field: stored -> current' lines for the hashed fields that differ."""
    current = config.hashed_fields()
    try:
        stored_fields = TrainConfig.from_dict(stored).hashed_fields()
    except (ConfigError, TypeError):
        stored_fields = stored
    keys = sorted(set(current) | set(stored_fields))
    return [f"{k}: {stored_fields.get(k, '<missing>')!r} (stored) vs {current.get(k, '<missing>')!r} (now)"
            for k in keys if stored_fields.get(k) != current.get(k)]


def _check_field_names(values: dict) -> None:
    valid = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"unknown TrainConfig field(s) {unknown}; valid fields are: {', '.join(valid)}")


# ------------------------------------------------------------------------------------------
# Profiles. Each is a set of overrides of the TrainConfig defaults (= the paper's settings).

PROFILES: dict[str, dict[str, Any]] = {
    # Sec. 4.2 literally: ImageNet-pretrained ResNet-50, 384x128, batch 64, 60 epochs,
    # SGD momentum 0.9, weight decay 5e-4, lr 0.1 then 0.01 after epoch 30, flip only.
    "paper": {},
    # The book's CPU settings on the synthetic demo data (`make book`'s default). Why they
    # differ from `paper`: the book trains 14 configurations x 2 seeds on a 2-core CPU within
    # 30 minutes, and ImageNet weights cannot be downloaded on the build machines. So: the
    # synthetic demo set; ResNet-34 (about 3x fewer FLOPs than ResNet-50, layer4 still has
    # the three blocks the taps need) from random init; 128x64 inputs, the synthetic images'
    # own size (an 8-row map: 8 stripes fit, 12 do not); batch 32 with the lr halved
    # (linear scaling: 0.1 * 32/64); two epochs, which is what the budget allows (measured
    # about 20 s per epoch plus 12 s of evaluation per run), too short for a step decay.
    # These models are far from converged; the book says so next to every table.
    "demo": {
        "dataset": "synthetic",
        "data_root": "data/synthetic-demo",
        "synthetic_preset": "demo",
        "backbone": "resnet34",
        "pretrained": None,
        "height": 128,
        "width": 64,
        "batch_size": 32,
        "epochs": 2,
        "lr": 0.05,
        "lr_decay_epochs": (),
        "precision": "auto",
        # The loader decodes ~30x faster than a 2-core CPU trains: no worker processes
        # (they would compete with the compute threads); decode each image once.
        "num_workers": 0,
        "cache_images": True,
    },
    # Seconds, for tests: the tiny synthetic set, 64x32 inputs (a 4x2 map, so the mmhpn
    # layout is scaled down to 4/2/2+1 stripes: still four scales at the three taps, so the
    # PSL's four gammas apply), a short schedule. Only checks that the machinery works.
    "smoke": {
        "dataset": "synthetic",
        "data_root": "data/synthetic-tiny",
        "synthetic_preset": "tiny",
        "layout": {"conv5_1": (4,), "conv5_2": (2,), "conv5_3": (2, 1)},
        "backbone": "resnet34",
        "pretrained": None,
        "height": 64,
        "width": 32,
        "batch_size": 16,
        "epochs": 2,
        # From random init the summed stripe losses make 0.05 diverge at this batch size.
        "lr": 0.01,
        "lr_decay_epochs": (2,),
        "precision": "fp32",
        "channels_last": False,
        "num_workers": 0,
    },
}


def make_config(profile: str = "paper", **overrides: Any) -> TrainConfig:
    """The configuration of a profile (``paper``, ``demo``, ``smoke``) with fields overridden.

    >>> make_config("smoke", epochs=1, loss="psl").epochs
    1
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles are {sorted(PROFILES)}")
    _check_field_names(overrides)
    values = {**PROFILES[profile], "profile": profile, **overrides}
    # A preset asked for by name means that preset's layout, even where the profile sets one
    # (the smoke profile's scaled-down layout would otherwise silently replace it).
    if "preset" in overrides and "layout" not in overrides:
        values["layout"] = None
    return TrainConfig(**values)


# ------------------------------------------------------------------------------------------
# Devices, precision, determinism.

def resolve_device(device: str) -> torch.device:
    """``auto`` -> the local CUDA device if there is one (this process's under torchrun), else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", distributed.local_rank() if distributed.is_enabled() else torch.cuda.current_device())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device on this machine")
        if resolved.index is None:
            resolved = torch.device("cuda", distributed.local_rank() if distributed.is_enabled() else 0)
    return resolved


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision ('bf16', 'fp16' or 'fp32') that `precision` means on `device`."""
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise ConfigError("precision 'fp16' is for CUDA devices; on CPU use 'bf16' or 'fp32'")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context for a concrete precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def determinism(enabled: bool):
    """Deterministic kernels while the block runs (restored afterwards: the setting is process-wide)."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if enabled:
        # cuBLAS needs this to be deterministic; it only takes effect before cuBLAS starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The lr of 0-based `epoch`: ``lr * factor**k`` where k = decay epochs already passed.

    The paper's "0.01 after epoch 30" means epochs 31..60 (0-based 30..59) use 0.01.
    """
    passed = sum(epoch >= milestone for milestone in config.lr_decay_epochs)
    return config.lr * config.lr_decay_factor ** passed


# ------------------------------------------------------------------------------------------
# RNG states, kept weights_only-loadable (tensors, ints, floats, lists; no numpy objects).

def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------
# Checkpoints.

def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then os.replace: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as err:  # issue 14: e.g. a full disk; say which file is still good
        kept = f"the previous {path} is kept unchanged" if path.exists() else f"no previous {path.name} existed"
        raise CheckpointError(f"could not write {path} ({err.strerror or err}); {kept}") from err
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, config: TrainConfig | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint or model file (weights_only); refuse corrupt or foreign ones.

    With `config`, a file whose stored configuration hash differs raises `CheckpointError`
    listing the fields that differ.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, pickle and EOF errors all mean "unreadable"
        first_line = (str(err).strip().splitlines() or [""])[0][:200]  # torch's messages run to many lines
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file "
                              f"({type(err).__name__}: {first_line})") from err
    required = ("format", "config", "config_hash", "num_classes", "model")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise CheckpointError(f"checkpoint {path} is not an mmhpn checkpoint (expected the keys {list(required)})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {state['format']}, this mmhpn reads format {CHECKPOINT_FORMAT}")
    if config is not None and state["config_hash"] != config_hash(config):
        diffs = config_differences(state["config"], config)
        raise CheckpointError(
            f"checkpoint {path} was made for another configuration ({'; '.join(diffs) or 'hash differs'})"
        )
    return state


def config_from_checkpoint(state: dict) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"the configuration stored in the checkpoint is not valid here: {err}") from err


# ------------------------------------------------------------------------------------------
# Data.

def load_data(config: TrainConfig):
    """The dataset of a configuration (synthetic data is generated first if missing)."""
    from mmhpn.data import load_dataset

    options: dict[str, Any] = {}
    if config.dataset == "synthetic":
        options.update(preset=config.synthetic_preset, seed=config.synthetic_seed)
    return load_dataset(config.dataset, config.data_root, **options)


def build_train_loader(config: TrainConfig, records, device: torch.device) -> torch.utils.data.DataLoader:
    """The training loader from `mmhpn.data`'s pieces: flip-only transform, seeded batches.

    The batches of epoch e depend only on (seed, e): `mmhpn.data`'s batch samplers and
    torch's `DistributedSampler` are set to the epoch by `set_loader_epoch`, which also
    re-seeds the loader's generator (it seeds the worker processes, hence their random
    flips; with ``num_workers=0`` the flips use torch's global RNG, saved in checkpoints).
    Workers are not kept between epochs, so every epoch's workers start from that seed.
    Under DDP each process gets 1/world of every epoch through a `DistributedSampler`
    (plain shuffling only) and ``batch_size / world`` images per step.
    """
    from mmhpn.data import IdentityBatchSampler, ImageDataset, ShuffleBatchSampler, build_transforms, collate_batch

    dataset = ImageDataset(records, build_transforms(config.height, config.width, train=True),
                           cache_images=config.cache_images)
    world = distributed.world_size()
    if config.batch_size % world:
        raise ConfigError(f"batch_size {config.batch_size} is the global batch; it must divide evenly over "
                          f"{world} processes")
    if len(dataset) < config.batch_size:
        raise ConfigError(f"the training split has {len(dataset)} images, fewer than one batch ({config.batch_size})")
    common = dict(num_workers=config.num_workers, pin_memory=device.type == "cuda", generator=torch.Generator(),
                  collate_fn=collate_batch)
    if world > 1:
        if config.sampler != "shuffle":
            raise ConfigError("with several processes only sampler='shuffle' is supported")
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=distributed.rank(),
                                                      shuffle=True, seed=config.seed, drop_last=True)
        # drop_last: a last batch of 1 would break BatchNorm
        return torch.utils.data.DataLoader(dataset, batch_size=config.batch_size // world, sampler=sampler,
                                           drop_last=True, **common)
    if config.sampler == "pk":
        batch_sampler = IdentityBatchSampler([r.pid for r in records], config.batch_size, config.num_instances,
                                             seed=config.seed)
    else:
        batch_sampler = ShuffleBatchSampler(len(dataset), config.batch_size, seed=config.seed, drop_last=True)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, **common)


def set_loader_epoch(loader: torch.utils.data.DataLoader, config: TrainConfig, epoch: int) -> None:
    """Make the next pass over `loader` the batches of `epoch` (see `build_train_loader`)."""
    loader.generator.manual_seed(config.seed * 100_003 + epoch)
    sampler = loader.batch_sampler if loader.batch_sampler is not None and hasattr(loader.batch_sampler, "set_epoch") \
        else loader.sampler
    sampler.set_epoch(epoch)


# ------------------------------------------------------------------------------------------
# Evaluation of a model on a dataset's query/gallery.

def evaluate_model(model: torch.nn.Module, dataset, *, height: int, width: int, batch_size: int = 128,
                   device: torch.device | str = "cpu", num_workers: int = 0, precision: str = "fp32",
                   flip: bool = False, protocol: str = "toolbox", rerank: bool = False,
                   channels_last: bool = False, progress: bool = True) -> dict:
    """Single-query scores, and multiple-query scores when the dataset has gt_bbox images.

    Returns a JSON-ready dict: rank1, rank5, rank10, mAP (fractions), num_queries,
    num_skipped, protocol, dataset, flip, rerank, and "multi_query" (the same scores, with
    the query features pooled over each query's gt_bbox images, Market-1501's setting).
    """
    from mmhpn import evaluation
    from mmhpn.data import build_eval_loader

    device = torch.device(device)

    def features(records):
        loader = build_eval_loader(records, height, width, batch_size, num_workers,
                                   pin_memory=device.type == "cuda")
        with autocast(device, precision):
            return evaluation.extract_features(model, loader, device, flip=flip, progress=progress,
                                               channels_last=channels_last)

    def score(qf, gf, q_pids, g_pids, q_camids, g_camids) -> dict:
        result = evaluation.evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids,
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
                pooled, p_pids, p_camids = evaluation.pool_multi_query(mf, m_pids, m_camids, q_pids, q_camids)
            except ConfigError as err:  # some query has no gt_bbox image: say so, keep single query
                metrics["multi_query"] = {"error": str(err)}
            else:
                metrics["multi_query"] = score(pooled, gf, p_pids, g_pids, p_camids, g_camids)
    return metrics


# ------------------------------------------------------------------------------------------
# The loop.

@dataclass
class TrainResult:
    """What `train` returns: the per-epoch history and the final metrics."""

    history: pd.DataFrame
    metrics: dict
    resumed_from_epoch: int = 0
    stopped_early: bool = False


class StopTraining(Exception):
    """Raised by an `on_epoch_end` callback to stop after the current epoch's checkpoint."""


def build_model_for(config: TrainConfig, num_classes: int, pretrained: bool = True) -> torch.nn.Module:
    from mmhpn.model import build_model

    return build_model(num_classes, preset=config.preset, backbone=config.backbone, pooling=config.pooling,
                       pretrained=config.pretrained if pretrained else None, layout=config.layout)


def write_config(config: TrainConfig, run_dir: Path) -> None:
    """Write config.json (all fields + hash); refuse a folder that holds another configuration."""
    path = run_dir / CONFIG_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path} is corrupt ({err}); delete the run folder to start again") from err
        if stored.get("hash") != config_hash(config):
            diffs = config_differences(stored.get("config", {}), config)
            raise CheckpointError(f"run folder {run_dir} holds a run of another configuration "
                                  f"({'; '.join(diffs) or 'hash differs'}); use another folder")
        return
    payload = {"hash": config_hash(config), "hashed_fields": sorted(config.hashed_fields()), "config": config.to_dict()}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def train(config: TrainConfig, run_dir: str | os.PathLike, *, progress: bool = True,
          stop_after_epochs: int | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train `config` in `run_dir`, resuming from its checkpoint if there is one.

    Writes (rank 0 only) ``config.json``, ``checkpoint.pt`` after every epoch,
    ``history.csv``, and at the end ``model.pt`` (weights + config) and ``metrics.json``.
    It does not write the "finished" marker: that is `mmhpn.runs.train_or_load`'s job.

    `stop_after_epochs` (testing hook) stops once that many epochs are done in total, as an
    interruption would, after the checkpoint is written. `on_epoch_end(epoch, row)` is called
    after each epoch's checkpoint; it may raise `StopTraining` to stop the same way.
    """
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    is_main = distributed.is_main_process()
    # Data first (a wrong dataset leaves no run folder behind). Rank 0 first: it generates
    # missing synthetic data while the others wait.
    dataset = load_data(config) if is_main else None
    distributed.barrier()
    dataset = dataset or load_data(config)
    num_classes = dataset.num_train_pids
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(config, run_dir)
    distributed.barrier()
    with determinism(config.deterministic):
        seed_everything(config.seed)
        model = build_model_for(config, num_classes).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        from mmhpn.losses import build_loss

        criterion = build_loss(config.loss, config.gammas, config.single_stripe, num_scales=len(model.scales))

        start_epoch, history = 0, []
        checkpoint_path = run_dir / CHECKPOINT_FILE
        if checkpoint_path.exists():
            state = load_checkpoint(checkpoint_path, config, map_location=device)
            if any(key not in state for key in RESUME_KEYS):
                missing = [key for key in RESUME_KEYS if key not in state]
                raise CheckpointError(f"checkpoint {checkpoint_path} cannot be resumed from: it lacks {missing} "
                                      "(a model file, not a training checkpoint?)")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch, history = int(state["epoch"]), list(state["history"])
            set_rng_state(state["rng"])
            if distributed.world_size() > 1:
                # Every process restored rank 0's state; keep their streams distinct.
                torch.manual_seed(config.seed * 1000 + start_epoch * 10 + distributed.rank())
        elif distributed.world_size() > 1:
            torch.manual_seed(config.seed + distributed.rank())

        def evaluate_now() -> dict:
            return evaluate_model(model, dataset, height=config.height, width=config.width,
                                  batch_size=max(config.batch_size, 64), device=device,
                                  num_workers=config.num_workers, precision=precision, flip=config.eval_flip,
                                  protocol=config.eval_protocol, channels_last=config.channels_last,
                                  progress=progress)

        net = distributed.wrap_model(model, device)
        loader = build_train_loader(config, dataset.train, device)
        stopped_early = False
        for epoch in range(start_epoch, config.epochs):
            row = _train_one_epoch(net, loader, criterion, optimizer, scaler, config, epoch, device, precision,
                                   progress and is_main)
            if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs:
                if is_main:
                    scores = evaluate_now()
                    row.update({k: scores[k] for k in ("rank1", "rank5", "rank10", "mAP")})
                distributed.barrier()
            history.append(row)
            if is_main:
                atomic_torch_save(_checkpoint_state(config, num_classes, model, optimizer, scaler, epoch + 1,
                                                    history), checkpoint_path)
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
                               train_seconds=float(sum(r["seconds"] for r in history)))
                atomic_torch_save(model_file_state(config, num_classes, model), run_dir / MODEL_FILE)
                write_history(history, run_dir)
                atomic_write_text(run_dir / METRICS_FILE, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            distributed.barrier()
    return TrainResult(history=pd.DataFrame(history), metrics=metrics, resumed_from_epoch=start_epoch,
                       stopped_early=stopped_early)


def _train_one_epoch(net, loader, criterion, optimizer, scaler, config: TrainConfig, epoch: int,
                     device: torch.device, precision: str, show_progress: bool) -> dict:
    lr = learning_rate(config, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    net.train()
    set_loader_epoch(loader, config, epoch)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    # Sums kept on the device and read every few steps: .item() every step would stall a GPU.
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct stripes, stripes
    images_seen = 0
    started = time.perf_counter()
    # One bar per epoch, left on screen: the finished bars read as the training log.
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not show_progress,
               leave=True, dynamic_ncols=True)
    for step, (images, pids, _camids) in enumerate(bar):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        pids = pids.to(device, non_blocking=True)
        with autocast(device, precision):
            outputs = net(images)
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
    return {"epoch": epoch + 1, "lr": lr, "loss": loss_value, "stripe_acc": correct_sum / stripe_sum,
            "seconds": time.perf_counter() - started, "images": images_total}


def _checkpoint_state(config, num_classes, model, optimizer, scaler, epochs_done, history) -> dict:
    return {
        **model_file_state(config, num_classes, model),
        "epoch": epochs_done,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "history": [dict(row) for row in history],
        "rng": rng_state(),
        "world_size": distributed.world_size(),
    }


def model_file_state(config: TrainConfig, num_classes: int, model: torch.nn.Module) -> dict:
    """The content of model.pt: the weights and what is needed to rebuild the model."""
    return {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "config_hash": config_hash(config),
            "num_classes": num_classes, "model": model.state_dict()}


def write_history(history: list[dict], run_dir: Path) -> None:
    tmp = run_dir / f".{HISTORY_FILE}.tmp-{os.getpid()}"
    pd.DataFrame(history).to_csv(tmp, index=False)
    os.replace(tmp, run_dir / HISTORY_FILE)


def load_model_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild the model stored in a model.pt or checkpoint.pt (eval mode) and its configuration."""
    state = load_checkpoint(path, map_location="cpu")
    config = config_from_checkpoint(state)
    model = build_model_for(config, int(state["num_classes"]), pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit the model its configuration describes: {err}") from err
    return model.to(device).eval(), config
