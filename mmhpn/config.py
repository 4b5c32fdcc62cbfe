"""The training configuration: `TrainConfig`, its hash, and the profiles.

* `TrainConfig` - every setting a run depends on. A run folder stores it as JSON and is
  named by `config_hash`, so a run folder, a checkpoint and a configuration can be matched;
  `config_differences` says which fields two configurations disagree on. Each field carries
  its one-line help and, for a name, the registry its value must come from (`_field`):
  `mmhpn train` and `mmhpn pretrain` make their options from them.
* The profiles `paper` (Sec. 4.2 to the letter), `demo` (the book's CPU settings), `smoke`
  (seconds, the smoke book) and `unit` (smaller still, unit tests only): `PROFILES`, `make_config`.
* `check_config` - how the fields fit together and with the machine (layout, loss, input
  height, weights file), checked before anything trains or is written.
* `build_model_for` - the network a configuration describes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import torch

from mmhpn import versions
from mmhpn.data.market import DATASETS
from mmhpn.data.pipeline import SAMPLERS
from mmhpn.data.synthetic import SYNTHETIC_PRESETS
from mmhpn.errors import ConfigError
from mmhpn.evaluation.protocol import PROTOCOLS
from mmhpn.losses import LOSSES, SINGLE_STRIPE_RULES, build_loss
from mmhpn.model import BACKBONES, POOLINGS, build_model, check_stripes_fit, feature_map_rows, parse_layout, pretrained_weights_path
from mmhpn.model import PRESETS as MODEL_PRESETS
from mmhpn.runtime import PRECISIONS

# The sections of TrainConfig's fields; `mmhpn train --help` groups its options by them.
RUN = "profile and run folder"
DATA = "data"
MODEL = "model"
LOSS = "loss"
SCHEDULE = "input and schedule"
REGIME = "fine-tuning regime (the demo and smoke profiles set these)"
MACHINE = "reproducibility, speed and evaluation"
SECTIONS = (RUN, DATA, MODEL, LOSS, SCHEDULE, REGIME, MACHINE)


def _field(default: Any, section: str, help: str, choices: Any = None) -> Any:
    """A TrainConfig field with its one-line description and, where the value is a name, the
    registry it must come from (the dict or tuple of the module that accepts it, so a name
    added there is valid here). `_validate` checks the choices; `mmhpn.cli` derives the
    options of `mmhpn train` / `mmhpn pretrain`, their help and choices from these."""
    return dataclasses.field(default=default, metadata={"section": section, "help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. The defaults are the paper's Sec. 4.2 settings,
    except the loss: the default is the plain softmax loss, and the ``paper`` profile sets the
    PSL with the paper's gammas (the paper's headline model).

    Fields left out of `config_hash` (they do not change the trained weights or the final
    metrics): ``profile`` and ``name`` (labels), ``data_root`` (where the data lives, not
    which data: a dataset is identified by ``dataset`` and, for synthetic data, by
    ``synthetic_preset`` and ``synthetic_seed``), ``device``, ``num_workers``,
    ``cache_images`` (the cached pipeline gives identical tensors) and ``eval_every``
    (intermediate evaluations run under a forked RNG and only add columns to the history). Fields that cannot matter for a setting are also normalised away:
    the synthetic preset/seed for real datasets, the PSL gammas/single-stripe rule for the
    other losses, ``scale_weights`` for losses other than ``weighted_softmax``,
    ``num_instances`` for the plain shuffling sampler. The regime fields ``val_fraction``,
    ``init_from``, ``freeze_below_layer4``, ``feature_cache`` and ``half_size_epochs`` are left
    out of the hash at their defaults (so adding them changed no existing hash); ``init_from`` is hashed as the
    pretraining configuration's own hash, so a fine-tuned run is tied to the exact
    pretraining run (and its code versions). The layout is hashed *resolved* (a
    preset's layout when ``layout`` is None), so a run is never matched by a preset's name
    alone. ``precision="auto"`` is
    hashed as written: it resolves per machine (bf16 where supported), which is recorded
    in ``metrics.json``.
    """

    # labels (not hashed)
    profile: str = _field("paper", RUN, "base settings: paper = Sec. 4.2 (ImageNet ResNet-50, 384x128, 60 epochs, "
                          "the PSL with the paper's gammas; precision is ours: bf16 autocast where supported, see "
                          "--precision), demo = the book's CPU settings on synthetic data, smoke = seconds, for "
                          "tests and the smoke book, unit = smaller still, unit tests only")
    name: str = _field("", RUN, "run name, the prefix of the default run folder")
    # data
    dataset: str = _field("market1501", DATA, "dataset name", choices=DATASETS)
    data_root: str = _field("data/market1501", DATA,
                            "dataset folder (Market-1501 layout); for synthetic data it is generated there if missing")
    synthetic_preset: str = _field("demo", DATA, "synthetic preset (mmhpn.data.synthetic)", choices=SYNTHETIC_PRESETS)
    synthetic_seed: int = _field(0, DATA, "seed of the synthetic data")
    # model (see mmhpn.model.build_model)
    preset: str = _field("mmhpn", MODEL, "the network's taps and stripes (the paper's Table 4 rows)",
                         choices=MODEL_PRESETS)
    layout: dict[str, tuple[int, ...]] | None = _field(
        None, MODEL, 'override the preset\'s stripes as JSON {tap: [stripe counts]}, e.g. \'{"conv5_3": [12]}\'')
    backbone: str = _field("resnet50", MODEL, "the ResNet trunk (resnet34-l4w*: ResNet-34 with a narrowed layer4, "
                           "no ImageNet weights)", choices=BACKBONES)
    pooling: str = _field("aps", MODEL, "aps (Eq. 1), avg (GAP) or max (GMP)", choices=POOLINGS)
    pretrained: str | None = _field("imagenet", MODEL, "'imagenet' (torchvision's file in the local torch hub cache, "
                                    "never downloaded), a path to a ResNet state_dict, or 'none' for random init")
    # loss (see mmhpn.losses.build_loss)
    loss: str = _field("softmax", LOSS, "softmax = Eq. 3; psl = the Part Sensitive Loss, Eq. 5 (the paper profile's); "
                       "weighted_softmax = Eq. 3 with one constant per scale (--scale-weights; ours, a control for "
                       "the PSL)", choices=LOSSES)
    gammas: tuple[float, ...] | None = _field((0.3, 0.5, 1.5, 2.0), LOSS, "PSL gammas, one per scale in the model's "
                                              "order, comma-separated, e.g. 0.3,0.5,1.5,2")
    single_stripe: str = _field("ce", LOSS, "PSL rule for one-stripe scales (see mmhpn.losses)",
                                choices=SINGLE_STRIPE_RULES)
    scale_weights: tuple[float, ...] | None = _field(None, LOSS, "weighted_softmax: one constant per scale in the "
                                                     "model's order, comma-separated")
    # input and sampling
    height: int = _field(384, SCHEDULE, "input height in pixels")
    width: int = _field(128, SCHEDULE, "input width in pixels")
    batch_size: int = _field(64, SCHEDULE, "batch size (global, over all processes)")
    sampler: str = _field("shuffle", SCHEDULE, "shuffle = plain shuffling (paper); pk = identity-balanced P x K "
                          "batches", choices=SAMPLERS)
    num_instances: int = _field(4, SCHEDULE, "K, images per identity for --sampler pk")
    # schedule: SGD with momentum; lr multiplied by lr_decay_factor at each lr_decay_epochs entry
    epochs: int = _field(60, SCHEDULE, "number of epochs")
    lr: float = _field(0.1, SCHEDULE, "initial learning rate (SGD)")
    lr_decay_epochs: tuple[int, ...] = _field((30,), SCHEDULE, "comma-separated epochs after which the lr is "
                                              "multiplied by --lr-decay-factor")
    lr_decay_factor: float = _field(0.1, SCHEDULE, "lr step factor")
    momentum: float = _field(0.9, SCHEDULE, "SGD momentum")
    # Progressive resizing (ours, for the stand-in for ImageNet: cheaper early epochs); the
    # evaluations, intermediate ones included, always read height x width.
    half_size_epochs: int = _field(0, SCHEDULE, "train the first N epochs on images at half the height and width, "
                                   "the rest at height x width (0 = every epoch at height x width)")
    weight_decay: float = _field(5e-4, SCHEDULE, "SGD weight decay")
    # reproducibility and speed
    seed: int = _field(0, MACHINE, "random seed")
    precision: str = _field("auto", MACHINE, "auto = bf16 autocast where the CPU/GPU supports it, fp16 on older "
                            "GPUs, else fp32 (ours: the paper states no precision; fp32 is the closest match)",
                            choices=PRECISIONS)
    deterministic: bool = _field(False, MACHINE, "deterministic kernels (slower; resumed runs then match "
                                 "uninterrupted ones on CPU)")
    channels_last: bool = _field(True, MACHINE, "channels_last memory format (faster convolutions on CPU and GPU)")
    # training regime (opt-in; see mmhpn.training). A validation split is for choosing
    # settings without ever reading the test split.
    val_fraction: float = _field(0.0, REGIME, "hold out this fraction of the training identities as a validation "
                                 "query/gallery and score on it (the test split is not read)")
    # {"profile": ..., **overrides} of a pretraining configuration (`pretraining_config`),
    # trained (or loaded) through the run cache first.
    init_from: dict[str, Any] | None = _field(None, REGIME, "fine-tune from a pretraining run: the JSON that `mmhpn "
                                              "pretrain` prints after init_from=, or 'none' to train from "
                                              "--pretrained's weights")
    freeze_below_layer4: bool = _field(False, REGIME, "freeze stem..layer3 (no gradients, BatchNorm in eval mode): "
                                       "train layer4 and the heads")
    # The loader then yields layer3's maps of each image and its mirror image, not images.
    feature_cache: bool = _field(False, REGIME, "with the freeze: compute layer3's maps once per image (shared by "
                                 "every run fine-tuned from the same pretraining run) and train on them")
    # evaluation
    eval_every: int = _field(0, MACHINE, "also evaluate every N epochs (0 = only at the end)")
    eval_flip: bool = _field(False, MACHINE, "average the features of each test image and its mirror image")
    eval_protocol: str = _field("toolbox", MACHINE, "toolbox = AP as in the PyTorch re-ID toolboxes; "
                                "market1501-official = the official Market-1501 code (trapezoid AP, id -1 junk)",
                                choices=PROTOCOLS)
    # machine (not hashed)
    num_workers: int = _field(0, MACHINE, "data loader worker processes")
    cache_images: bool = _field(False, MACHINE, "decode the training images once into memory (faster epochs, same "
                                "results)")
    device: str = _field("auto", MACHINE, "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        # Normalise JSON-ish values (lists from a JSON file or the command line) to tuples.
        object.__setattr__(self, "lr_decay_epochs", tuple(int(e) for e in self.lr_decay_epochs))
        if self.gammas is not None:
            object.__setattr__(self, "gammas", tuple(float(g) for g in self.gammas))
        if self.scale_weights is not None:
            object.__setattr__(self, "scale_weights", tuple(float(w) for w in self.scale_weights))
        if self.init_from is not None:
            if not isinstance(self.init_from, dict) or not isinstance(self.init_from.get("profile"), str):
                raise ConfigError(f"init_from must be a dict {{'profile': name, **field overrides}} of a pretraining "
                                  f"configuration, or None; got {self.init_from!r}")
            object.__setattr__(self, "init_from", json.loads(json.dumps(self.init_from)))
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

        for field in dataclasses.fields(self):
            if field.metadata["choices"] is not None:
                choice(field.name, tuple(field.metadata["choices"]))
        for name in ("height", "width", "batch_size", "epochs", "num_instances"):
            positive(name)
        if self.batch_size < 2:  # BatchNorm cannot train on one image per batch
            raise ConfigError(f"batch_size must be at least 2 (BatchNorm needs two images per batch), "
                              f"got {self.batch_size}")
        for name in ("eval_every", "num_workers", "seed", "synthetic_seed", "half_size_epochs"):
            positive(name, allow_zero=True)
        if self.half_size_epochs:
            if self.half_size_epochs >= self.epochs:
                raise ConfigError(f"half_size_epochs ({self.half_size_epochs}) must be fewer than epochs "
                                  f"({self.epochs}): at least the last epoch trains at height x width")
            if self.height % 2 or self.width % 2:
                raise ConfigError(f"half_size_epochs needs an even height and width, got {self.height}x{self.width}")
        for names, sign, least in ((("lr", "lr_decay_factor"), "positive", math.ulp(0.0)),
                                   (("momentum", "weight_decay"), "non-negative", 0.0)):
            for name in names:
                value = getattr(self, name)
                if not (isinstance(value, (int, float)) and value >= least and math.isfinite(value)):
                    finite = "" if not isinstance(value, (int, float)) or math.isfinite(value) else ", which is not finite"
                    raise ConfigError(f"{name} must be a {sign} number, got {value!r}{finite}")
        if any(e < 1 for e in self.lr_decay_epochs):
            raise ConfigError(f"lr_decay_epochs must be epoch numbers >= 1, got {list(self.lr_decay_epochs)}")
        if self.loss == "weighted_softmax" and (
                not self.scale_weights or not all(math.isfinite(w) and w >= 0 for w in self.scale_weights)):
            raise ConfigError(f"loss 'weighted_softmax' needs scale_weights, one finite non-negative number per "
                              f"scale, got {self.scale_weights!r}")
        if not (isinstance(self.val_fraction, (int, float)) and not isinstance(self.val_fraction, bool)
                and 0.0 <= self.val_fraction < 1.0):
            raise ConfigError(f"val_fraction must be a number in [0, 1) (the share of training identities held out "
                              f"for validation), got {self.val_fraction!r}")
        for name in ("freeze_below_layer4", "feature_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.feature_cache and not self.freeze_below_layer4:
            raise ConfigError("feature_cache needs freeze_below_layer4=True (only a frozen trunk's features "
                              "stay the same from one epoch to the next)")
        if self.feature_cache and self.half_size_epochs:
            raise ConfigError("feature_cache trains on layer3 maps computed once at height x width; it cannot "
                              "train epochs at half size (set half_size_epochs=0)")
        if self.init_from is not None:
            if self.pretrained is not None:
                raise ConfigError(f"init_from and pretrained={self.pretrained!r} both give the trunk's initial "
                                  "weights; set pretrained=None to fine-tune from a pretraining run")
            source = pretraining_config(self.init_from)
            if source.backbone != self.backbone:
                raise ConfigError(f"init_from trains a {source.backbone} trunk, this configuration a "
                                  f"{self.backbone}; they must be the same backbone")
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
        # The model depends on the resolved layout, not on a preset's name: a preset whose
        # layout changes (mmhpn did) must not be served runs trained under the old one.
        if self.layout is None:
            values["layout"] = {tap: list(counts) for tap, counts in MODEL_PRESETS[self.preset].items()}
        if self.dataset != "synthetic":
            values["synthetic_preset"] = values["synthetic_seed"] = None
        if self.loss != "psl":
            values["gammas"] = values["single_stripe"] = None
        if self.loss != "weighted_softmax":
            values.pop("scale_weights")  # left out, so adding the field changed no other hash
        if self.sampler == "shuffle":
            values["num_instances"] = None
        # The regime fields are left out at their defaults, so adding them changed no hash.
        for name, default in (("val_fraction", 0.0), ("freeze_below_layer4", False), ("feature_cache", False),
                              ("half_size_epochs", 0)):
            if values[name] == default:
                values.pop(name)
        if self.init_from is None:
            values.pop("init_from")
        else:  # the pretraining run's own hash: its fields, layout and code versions
            values["init_from"] = config_hash(pretraining_config(self.init_from))
        # Hash what the code computes too, not only the fields (see mmhpn.versions).
        values["training_semantics_version"] = versions.TRAINING_SEMANTICS_VERSION
        values["synthetic_format_version"] = (versions.synthetic_format_version()
                                              if self.dataset == "synthetic" else None)
        return values

    @property
    def half_size(self) -> tuple[int, int]:
        """The (height, width) of the `half_size_epochs`' inputs."""
        return self.height // 2, self.width // 2

    @property
    def hash(self) -> str:
        return config_hash(self)

    @property
    def run_name(self) -> str:
        """The folder-name prefix: `name` if set, else profile-preset-loss."""
        return slug(self.name or f"{self.profile}-{self.preset}-{self.loss}")


def slug(text: str) -> str:
    """`text` as a file-name part: letters, digits, '-', '_' and '.' kept, the rest '-'."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


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
    # SGD momentum 0.9, weight decay 5e-4, lr 0.1 then 0.01 after epoch 30, flip only; the
    # paper's headline model: MMHPN + APS trained with the PSL and the gammas of Sec. 4.2.
    # Precision is ours: "auto" trains under bf16 autocast where the CPU/GPU supports it
    # (fp16 + gradient scaling on older GPUs); the paper says nothing about precision
    # (presumably fp32). Use --precision fp32 for the closest match.
    "paper": {"loss": "psl"},
    # The book's CPU regime on the synthetic demo data (`make book`'s default), the paper's
    # protocol scaled to a 2-core CPU: fine-tune a pretrained trunk until the validation mAP
    # levels off. ImageNet weights cannot be downloaded on the build machines, so the trunk
    # is pretrained on a separate synthetic set (`init_from`, the `pretrain` preset: 1,000
    # identities, none of them a test identity) until its own validation mAP levels off, once
    # per replicate seed (kept in the per-user pretraining folder, `mmhpn.runs.pretraining_dir`),
    # and every row of a replicate fine-tunes from that replicate's run, as the paper's rows
    # all start from ImageNet. Then:
    # * ResNet-34 with layer4 narrowed to 128 channels (`resnet34-l4w128`): the three layer4
    #   blocks, i.e. the three taps, are kept; ResNet-34 has ~3x fewer FLOPs than ResNet-50;
    # * the trunk below layer4 frozen and its layer3 maps computed once per image for the
    #   whole build (`freeze_below_layer4`, `feature_cache`, `mmhpn.trunk_cache`): every
    #   Table 4-7 mechanism (taps, stripes, pooling, losses) lives in layer4 and the heads;
    # * 128x64 inputs, the synthetic images' own size (an 8-row map: 8 stripes fit; Figure 5
    #   trains at 192x64 for its 12 stripes); batch 32 with the lr halved (linear scaling:
    #   0.1 * 32/64); bf16 autocast and channels_last where the CPU supports them;
    # * the schedule, chosen on a validation split of *training* identities (never on the
    #   test split) with `benchmarks/select_regime.py`: see its reference result and the
    #   compute-cost page.
    "demo": {
        "dataset": "synthetic",
        "data_root": "data/synthetic-demo",
        "synthetic_preset": "demo",
        "backbone": "resnet34-l4w128",
        "pretrained": None,
        "height": 128,
        "width": 64,
        "batch_size": 32,
        # 5 epochs, lr / 10 after the 3rd: the output of the rule in `mmhpn.paper.selection`
        # (`choose_regime`) on the recorded `benchmarks/select_regime.py` result (mmhpn/resources/,
        # checked by a test), fine-tuning from the converged pretraining runs
        "epochs": 5,
        "lr": 0.05,
        "lr_decay_epochs": (3,),
        "precision": "auto",
        "channels_last": True,
        "freeze_below_layer4": True,
        "feature_cache": True,
        # The loader decodes ~30x faster than a 2-core CPU trains: no worker processes
        # (they would compete with the compute threads); decode each image once.
        "num_workers": 0,
        "cache_images": True,
    },
    # Seconds a run, for the smoke book and for trying a notebook by hand
    # (`papermill ... -p profile smoke`): the demo regime's code paths (a pretraining run,
    # the frozen trunk's shared layer3 maps, fine-tuning) on the tiny synthetic set at its
    # images' own size, 128x64 (an 8-row map, so every preset's layout fits), one epoch.
    # Only checks the machinery, not the numbers.
    "smoke": {
        "dataset": "synthetic",
        "data_root": "data/synthetic-tiny",
        "synthetic_preset": "tiny",
        "backbone": "resnet34-l4w128",
        "pretrained": None,
        "height": 128,
        "width": 64,
        "batch_size": 16,
        "epochs": 1,
        "lr": 0.01,
        "lr_decay_epochs": (),
        "precision": "auto",
        "channels_last": True,
        "freeze_below_layer4": True,
        "feature_cache": True,
        "num_workers": 0,
        "cache_images": True,
    },
}


def _pretraining_fields(profile: str, **overrides: Any) -> dict[str, Any]:
    """The ``init_from`` dict of the synthetic stand-in for ImageNet pretraining (unchecked).

    The ``pretrain`` synthetic preset (1,000 identities from another random stream than the
    demo's, so none is a test identity of the demo split), the baseline head (one global
    stripe: the heads are not transferred, only stem..layer4), the whole network trained
    from random weights, everything else from `profile`, with `overrides` on top.
    """
    return {"profile": profile, "synthetic_preset": "pretrain", "preset": "baseline",
            "data_root": "data/synthetic-pretrain", "name": f"pretrain-{profile}", "init_from": None,
            "freeze_below_layer4": False, "feature_cache": False, "val_fraction": 0.0, **overrides}


# The pretraining runs the book profiles fine-tune from, one per replicate seed (`make_config`
# writes the seed in). Demo: a fifth of the pretraining identities held out and scored after
# every epoch (`val_fraction`, `eval_every`), so each run shows its own convergence; the
# schedule is the output of the rule in `mmhpn.paper.selection` (`choose_pretraining`) on
# the recorded `benchmarks/select_pretraining.py` result (mmhpn/resources/, checked by a
# test). Smoke: one epoch on the tiny-pretrain set.
PROFILES["demo"]["init_from"] = _pretraining_fields("demo", epochs=12, lr_decay_epochs=[9], val_fraction=0.2,
                                                    eval_every=1)
PROFILES["smoke"]["init_from"] = _pretraining_fields("smoke", synthetic_preset="tiny-pretrain",
                                                     data_root="data/synthetic-tiny-pretrain", epochs=1)

# Seconds, for unit tests only (no notebook offers it): the former smoke settings at 64x32
# (a 4x2 map: 8 stripes do not fit), ResNet-34 from random init, trained whole, so the
# mmhpn layout is scaled down to 4, 3 | 2 | 1 stripes:
# the same shape as the preset's 8, 4 | 2 | 1 (two finer scales at conv5_1, one at
# conv5_2, the whole map alone at conv5_3), four distinct stripe counts in decreasing
# order, so the PSL's four gammas apply as they do to the preset. (This was the `smoke`
# profile until the smoke book needed the presets' layouts; its hashes are unchanged.)
# fp32 and two epochs with a decay: exact resume and the lr schedule are tested on it.
PROFILES["unit"] = {**PROFILES["smoke"], "layout": {"conv5_1": (4, 3), "conv5_2": (2,), "conv5_3": (1,)},
                    "backbone": "resnet34", "height": 64, "width": 32, "epochs": 2, "lr_decay_epochs": (2,),
                    "precision": "fp32", "channels_last": False, "init_from": None,
                    "freeze_below_layer4": False, "feature_cache": False}


def make_config(profile: str = "paper", **overrides: Any) -> TrainConfig:
    """The configuration of a profile (``paper``, ``demo``, ``smoke``, ``unit``) with fields overridden.

    >>> make_config("smoke", epochs=1, loss="psl").epochs
    1
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles are {sorted(PROFILES)}")
    _check_field_names(overrides)
    values = {**PROFILES[profile], "profile": profile, **overrides}
    # A replicate is the whole pipeline: seed s fine-tunes from its own pretraining run, trained
    # with seed s too, so an interval over seeds covers every source a re-run changes (the
    # synthetic data draw stays fixed: it is the benchmark). An init_from given explicitly is kept.
    if values.get("init_from") is not None and "init_from" not in overrides:
        values["init_from"] = {**values["init_from"], "seed": values.get("seed", 0)}
    # A preset asked for by name means that preset's layout, even where the profile sets one
    # (the smoke profile's scaled-down layout would otherwise silently replace it).
    if "preset" in overrides and "layout" not in overrides:
        values["layout"] = None
    return TrainConfig(**values)


def pretraining_config(init_from: dict) -> TrainConfig:
    """The configuration an ``init_from`` dict names: ``make_config(profile, **overrides)``.

    A pretraining run is an ordinary run (cached in the run folder's parent, see
    `mmhpn.training.train`); it may not itself start from another run.

    >>> pretraining_config({"profile": "smoke", "epochs": 1}).epochs
    1
    """
    values = dict(init_from)
    profile = values.pop("profile")
    if values.get("init_from") is not None:
        raise ConfigError("a pretraining configuration (init_from) cannot itself have init_from")
    return make_config(profile, **values)


def pretrain_overrides(profile: str = "demo", **overrides: Any) -> dict:
    """An ``init_from`` dict for the synthetic stand-in for ImageNet pretraining, checked.

    The profile's own pretraining run (its ``init_from``) where it has one, else the
    ``pretrain`` preset with the profile's settings (`_pretraining_fields`); `overrides`
    (e.g. ``epochs``, ``data_root``) on top.
    """
    values = {**(PROFILES[profile].get("init_from") or _pretraining_fields(profile)), **overrides}
    pretraining_config(values)  # validate now
    return values


def check_config(config: TrainConfig) -> None:
    """The checks of `config` that need the model's geometry or the file system: one ConfigError line.

    `TrainConfig` checks each field when it is made; this checks how they fit together and
    with the machine, before any row trains or any run folder is written (the run cache
    calls it first; a notebook can call it for each of its rows; the backbone's and the
    pooling's names are checked when the configuration is made): the layout's taps exist; the PSL has one finite gamma >= 0 per scale (the weighted softmax one
    weight per scale); no scale has more stripes than the feature map has rows at this
    input height (and at half of it, for ``half_size_epochs``); the ``pretrained`` weights
    file is there and not empty; and the same for the ``init_from`` pretraining configuration.
    """
    layout = config.layout if config.layout is not None else MODEL_PRESETS[config.preset]
    scales = parse_layout(layout)
    build_loss(config.loss, config.gammas, config.single_stripe, num_scales=len(scales),
               scale_weights=config.scale_weights)  # the loss's own checks, against this layout's scales
    check_stripes_fit(scales, feature_map_rows(config.height), (config.height, config.width))
    if config.half_size_epochs:
        try:
            check_stripes_fit(scales, feature_map_rows(config.half_size[0]), config.half_size)
        except ConfigError as err:
            raise ConfigError(f"half_size_epochs={config.half_size_epochs} trains at half size, and {err}") from None
    if config.pretrained is not None:
        pretrained_weights_path(config.backbone, config.pretrained)
    if config.init_from is not None:
        check_config(pretraining_config(config.init_from))


def build_model_for(config: TrainConfig, num_classes: int, pretrained: bool = True) -> torch.nn.Module:
    """The network of `config` (`mmhpn.model.build_model`); `pretrained=False` skips the weights file."""
    return build_model(num_classes, preset=config.preset, backbone=config.backbone, pooling=config.pooling,
                       pretrained=config.pretrained if pretrained else None, layout=config.layout)
