"""The MMHPN network: a ResNet trunk, taps in its last stage, striped heads with APS.

One file a reader can hold in their head. The pieces, in forward order:

* `ResNet trunk` - a torchvision ResNet whose last stage (`layer4`, the paper's res_conv5)
  has three blocks; global pooling and FC removed, and the first block of `layer4` given
  stride 1, so a 384x128 image gives a 24x8 map (1/16, as Sec. 3.2.1 states). Which block
  gets stride 1 is our reading: the paper says "the stride of the res_conv4_1 block is set
  to 1", which in its own naming (res_conv5_x = layer4's blocks) would be layer3's first
  block; we follow the common last-stride choice (PCB, MGN: layer4's first block), which
  gives the 1/16 map the paper states (see the book's reproduction notes).
* `taps` - the outputs of the three `layer4` blocks, named as in the paper:
  ``conv5_1``, ``conv5_2``, ``conv5_3``.
* a `layout` - which stripe counts are pooled at which tap. Each (tap, stripe count) pair
  is one *scale*. The presets are the paper's ablation rows (Table 4):

  =========  ===============================================  ==========
  preset     layout                                           descriptor
  =========  ===============================================  ==========
  baseline   conv5_3: 1                                       256
  msm        conv5_1: 1, conv5_2: 1, conv5_3: 1               768
  mhpm       conv5_3: 8, 4, 2, 1                              3840
  mmhpn      conv5_1: 8, 4, conv5_2: 2, conv5_3: 1            3840
  =========  ===============================================  ==========

  The ``mmhpn`` layout is our reading of Sec. 3.2, which never states the mapping
  explicitly. The text says the local (mid-level) branches after res_conv5_1 and
  res_conv5_2 carry the "8, 4 and 2 stripes" and that "the global branch contains the
  complete feature map without any partition information" (Sec. 3.2.2): so conv5_3 pools
  the single stripe only. Sharing one APS weight per branch failed "due to the obvious
  difference of stripe scale in the upper branch" (Sec. 3.2.3): so one mid-level branch,
  the upper one, carries two scales. Which two is not stated; with small parts learning
  "mid-level details" (Sec. 3.2.2), the two finest scales (8 and 4) sit at the earliest
  tap, conv5_1, and the 2-stripe scale at conv5_2. The scales stay in the order 8, 4, 2, 1,
  the order in which Sec. 4.2 lists the PSL's gammas (see `mmhpn.losses`). The book's
  reproduction notes give the reasoning, and its "which tap carries which scale" page
  trains the other readings.
* per scale, `StripeHeads`: pooling of each horizontal stripe (GAP, GMP or APS), then a
  non-shared 1x1 convolution to 256 channels + BatchNorm + ReLU per stripe, then a
  non-shared linear classifier per stripe.

Adaptive Pooling Strategy (Eq. 1): ``f = a * GAP(S) + (1 - a) * GMP(S)`` with one learnable
``a`` per scale, shared by that scale's stripes. We keep ``a`` in (0, 1) by storing its
logit: ``a = sigmoid(theta)``, ``theta`` initialised to 0, so training starts at an equal
mix. (The paper gives neither the constraint nor the initial value.)

Outputs: in training mode the forward pass returns a list with one logits tensor per scale,
shaped (batch, stripes, num_classes). In eval mode it returns the test descriptor
(batch, 256 * total stripes): the concatenation of every stripe's 256-d vector (after
conv + BN + ReLU), in scale order, *not* normalised; `mmhpn.evaluation` L2-normalises the
whole descriptor for cosine distance. The paper's "3780-d" is 15 x 256 = 3840.

Stripe counts taller than the feature map are an error (we do not repeat rows): the map is
``height / 16`` rows high, so 8 stripes need inputs at least 128 pixels high, 12 stripes 192.
Heights that are not multiples of the stripe count use PyTorch's adaptive pooling bins.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from mmhpn.errors import ConfigError, torch_load_problem

TAPS = ("conv5_1", "conv5_2", "conv5_3")
POOLINGS = ("avg", "max", "aps")
EMBED_DIM = 256
# The trunk's total stride with layer4's first stride set to 1.
FEATURE_STRIDE = 16

PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    "baseline": {"conv5_3": (1,)},
    "msm": {"conv5_1": (1,), "conv5_2": (1,), "conv5_3": (1,)},
    "mhpm": {"conv5_3": (8, 4, 2, 1)},
    "mmhpn": {"conv5_1": (8, 4), "conv5_2": (2,), "conv5_3": (1,)},
}


def _resnet34_narrow_layer4(width: int):
    """A ResNet-34 whose layer4 keeps its three blocks (the taps) at `width` channels, not 512.

    Ours, for CPU budgets (`mmhpn.config`): with layer4's stride at 1, layer4 costs about as
    much as the rest of the trunk at 128x64, and a fine-tuning that freezes the rest trains
    layer4 alone; 256 channels make that step about 3x cheaper (benchmarks/bench_regime.py).
    There are no ImageNet weights for it: it is trained from random init or `init_from` a
    pretraining run.
    """
    def constructor(weights=None, **kwargs):
        if weights is not None:
            raise ConfigError(f"resnet34 with a {width}-channel layer4 has no ImageNet weights")
        trunk = torchvision.models.resnet34(weights=None, **kwargs)
        trunk.inplanes = 256  # layer3's output channels, which _make_layer starts from
        trunk.layer4 = trunk._make_layer(torchvision.models.resnet.BasicBlock, width, 3, stride=2)
        trunk.fc = nn.Linear(width, trunk.fc.out_features)
        return trunk
    return constructor


# name -> (torchvision constructor, weights enum (None: no ImageNet weights), channels out of layer4)
BACKBONES = {
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1, 2048),
    "resnet101": (torchvision.models.resnet101, torchvision.models.ResNet101_Weights.IMAGENET1K_V1, 2048),
    "resnet34-l4w256": (_resnet34_narrow_layer4(256), None, 256),
    "resnet34-l4w128": (_resnet34_narrow_layer4(128), None, 128),
}


@dataclass(frozen=True)
class Scale:
    """One pooling scale: `stripes` horizontal stripes pooled from the output of `tap`."""

    tap: str
    stripes: int

    @property
    def label(self) -> str:
        return f"{self.tap}/{self.stripes}"


def parse_layout(layout: Mapping[str, Sequence[int] | int]) -> list[Scale]:
    """Validate a {tap: stripe counts} layout and return its scales in forward order."""
    if not isinstance(layout, Mapping) or not layout:
        raise ConfigError(f"layout must be a non-empty mapping {{tap: stripe counts}}, got {layout!r}")
    unknown = [tap for tap in layout if tap not in TAPS]
    if unknown:
        raise ConfigError(f"unknown tap(s) {unknown} in layout; valid taps are {list(TAPS)}")
    scales = []
    for tap in TAPS:
        if tap not in layout:
            continue
        counts = layout[tap]
        counts = (counts,) if isinstance(counts, int) else tuple(counts)
        if not counts:
            raise ConfigError(f"tap {tap} has no stripe counts in layout {dict(layout)}")
        for count in counts:
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigError(f"stripe counts must be positive integers, got {count!r} at {tap}")
            scales.append(Scale(tap, count))
    if len(set(scales)) != len(scales):
        raise ConfigError(f"layout {dict(layout)} repeats a stripe count at the same tap")
    return scales


def feature_map_rows(height: int) -> int:
    """The rows of layer4's map for inputs `height` pixels high: ``ceil(height / 16)``
    (the trunk's four stride-2 steps each round up)."""
    rows = height
    for _ in range(4):  # conv1, maxpool, layer2, layer3 (layer4's stride is 1)
        rows = (rows + 1) // 2
    return rows


def check_stripes_fit(scales: Sequence[Scale], rows: int, input_size: tuple[int, int]) -> None:
    """ConfigError when a scale has more stripes than the feature map has rows (we do not repeat rows)."""
    tallest = max(s.stripes for s in scales)
    if tallest > rows:
        raise ConfigError(
            f"a {input_size[0]}x{input_size[1]} input gives a feature map {rows} rows high, "
            f"too short for {tallest} stripes; use inputs at least {tallest * FEATURE_STRIDE} pixels high"
        )


class StripeHeads(nn.Module):
    """All stripes of one scale: pooling, then per-stripe 1x1 conv + BN + ReLU and classifier.

    The per-stripe ("non-shared") layers of a scale are stored as grouped 1x1 convolutions
    with one group per stripe: mathematically P independent layers, but one kernel call.
    """

    def __init__(self, in_channels: int, stripes: int, num_classes: int, pooling: str):
        super().__init__()
        self.stripes = stripes
        self.pooling = pooling
        if pooling == "aps":
            # a = sigmoid(theta): the weight of average pooling, shared by this scale's stripes.
            self.aps_logit = nn.Parameter(torch.zeros(()))
        self.reduce = nn.Conv1d(stripes * in_channels, stripes * EMBED_DIM, 1, groups=stripes, bias=False)
        self.bn = nn.BatchNorm1d(stripes * EMBED_DIM)
        self.classifier = nn.Conv1d(stripes * EMBED_DIM, stripes * num_classes, 1, groups=stripes)
        nn.init.kaiming_normal_(self.reduce.weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def aps_weight(self) -> torch.Tensor:
        """The average-pooling weight `a` of Eq. 1 (1 for "avg", 0 for "max")."""
        if self.pooling == "aps":
            return torch.sigmoid(self.aps_logit)
        return torch.tensor(1.0 if self.pooling == "avg" else 0.0)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, stripes): one pooled vector per horizontal stripe, top first."""
        bins = (self.stripes, 1)
        if self.pooling == "avg":
            return F.adaptive_avg_pool2d(fmap, bins).flatten(2)
        if self.pooling == "max":
            return F.adaptive_max_pool2d(fmap, bins).flatten(2)
        a = torch.sigmoid(self.aps_logit)
        avg = F.adaptive_avg_pool2d(fmap, bins).flatten(2)
        mx = F.adaptive_max_pool2d(fmap, bins).flatten(2)
        return a * avg + (1 - a) * mx

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (embeddings (B, stripes, 256), logits (B, stripes, num_classes))."""
        batch = fmap.shape[0]
        pooled = self.pool(fmap)  # (B, C, P)
        # Stripe-major channel order so that group p of the convs sees stripe p only.
        x = pooled.transpose(1, 2).reshape(batch, -1, 1)  # (B, P*C, 1)
        emb = F.relu(self.bn(self.reduce(x)))  # (B, P*256, 1)
        logits = self.classifier(emb)  # (B, P*num_classes, 1)
        return emb.view(batch, self.stripes, EMBED_DIM), logits.view(batch, self.stripes, -1)


class MMHPN(nn.Module):
    """Multi-level and Multi-scale Horizontal Pooling Network (see the module docstring)."""

    def __init__(self, num_classes: int, layout: Mapping[str, Sequence[int] | int],
                 backbone: str = "resnet50", pooling: str = "aps"):
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer (training identities), got {num_classes!r}")
        if backbone not in BACKBONES:
            raise ConfigError(
                f"unknown backbone {backbone!r}; valid backbones are {sorted(BACKBONES)} "
                "(torchvision ResNets whose layer4 has three blocks, one per tap conv5_1..conv5_3)"
            )
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid poolings are {list(POOLINGS)}")
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.pooling = pooling
        self.scales = parse_layout(layout)
        self.layout = {tap: tuple(s.stripes for s in self.scales if s.tap == tap)
                       for tap in TAPS if any(s.tap == tap for s in self.scales)}

        constructor, _, channels = BACKBONES[backbone]
        trunk = constructor(weights=None)
        _set_first_block_stride_to_one(trunk.layer4[0])
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        self.layer1, self.layer2, self.layer3 = trunk.layer1, trunk.layer2, trunk.layer3
        # layer4's blocks 0, 1, 2 are the taps conv5_1, conv5_2, conv5_3. Blocks after the
        # last used tap are dropped: they would never receive a gradient (and DDP would object).
        self.last_tap_index = max(TAPS.index(s.tap) for s in self.scales)
        self.layer4 = trunk.layer4[: self.last_tap_index + 1]
        self.heads = nn.ModuleList(StripeHeads(channels, s.stripes, num_classes, pooling) for s in self.scales)
        self.embedding_dim = EMBED_DIM * sum(s.stripes for s in self.scales)

    # -- introspection used by the losses, figures and book ------------------------------
    def tap_module(self, tap: str) -> nn.Module:
        """The layer4 block whose output is `tap` (the Grad-CAM target layer for that tap)."""
        if tap not in TAPS[: self.last_tap_index + 1]:
            raise ConfigError(f"tap {tap!r} is not computed by this model; its taps are {list(TAPS[: self.last_tap_index + 1])}")
        return self.layer4[TAPS.index(tap)]

    def aps_weights(self) -> dict[str, float]:
        """{scale label: a}, the average-pooling weight of Eq. 1 per scale (1 = GAP, 0 = GMP)."""
        return {s.label: float(h.aps_weight().detach()) for s, h in zip(self.scales, self.heads)}

    def backbone_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("heads.")]

    def head_parameters(self):
        return list(self.heads.parameters())

    # -- forward -----------------------------------------------------------------------
    # The forward pass is split at layer3's output so that a fine-tuning regime that freezes
    # the trunk below layer4 can compute that part once per image and reuse it every epoch
    # (`mmhpn.training`, ``feature_cache``): every mechanism the paper's tables compare (taps,
    # stripes, pooling, losses) lives in layer4 and the heads.
    def trunk_below_layer4(self, images: torch.Tensor) -> torch.Tensor:
        """stem, layer1, layer2, layer3: the (B, C, H/16, W/16) map layer4 starts from."""
        return self.layer3(self.layer2(self.layer1(self.stem(images))))

    def taps_from_layer3(self, x: torch.Tensor, input_size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """{tap: feature map} for the taps the layout uses, from layer3's output.

        `input_size` (height, width) of the images only words the error for too many stripes.
        """
        maps = {}
        for tap, block in zip(TAPS, self.layer4):
            x = block(x)
            maps[tap] = x
        height = x.shape[2]
        size = input_size or (height * FEATURE_STRIDE, x.shape[3] * FEATURE_STRIDE)
        check_stripes_fit(self.scales, height, size)
        return maps

    def tap_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{tap: feature map} for the taps the layout uses."""
        return self.taps_from_layer3(self.trunk_below_layer4(images), tuple(images.shape[2:]))

    def _heads_from_maps(self, maps: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        embeddings, logits = [], []
        for scale, head in zip(self.scales, self.heads):
            emb, logit = head(maps[scale.tap])
            embeddings.append(emb)
            logits.append(logit)
        return embeddings, logits

    def _heads(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self._heads_from_maps(self.tap_features(images))

    def stripe_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """One (batch, stripes, num_classes) logits tensor per scale, in either mode."""
        return self._heads(images)[1]

    def descriptor(self, images: torch.Tensor) -> torch.Tensor:
        """The (batch, embedding_dim) test descriptor: all stripe vectors concatenated."""
        embeddings = self._heads(images)[0]
        return torch.cat([e.flatten(1) for e in embeddings], dim=1)

    def forward_from_layer3(self, x: torch.Tensor):
        """`forward` starting from `trunk_below_layer4`'s output: logits per scale in training
        mode, the test descriptor in eval mode. ``forward(images)`` equals
        ``forward_from_layer3(trunk_below_layer4(images))``."""
        embeddings, logits = self._heads_from_maps(self.taps_from_layer3(x))
        if self.training:
            return logits
        return torch.cat([e.flatten(1) for e in embeddings], dim=1)

    def forward(self, images: torch.Tensor):
        if self.training:
            return self.stripe_logits(images)
        return self.descriptor(images)


def _set_first_block_stride_to_one(block: nn.Module) -> None:
    """Give layer4's first block stride 1 (both its strided conv and its shortcut).

    Our reading of the paper's "res_conv4_1 block" (the common last-stride choice; see the
    module docstring): it gives the 1/16 map Sec. 3.2.1 states.
    """
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if conv is not None and conv.stride == (2, 2):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def load_pretrained_backbone(model: MMHPN, pretrained: str | os.PathLike) -> None:
    """Load ImageNet weights into the trunk of `model`, without ever touching the network.

    ``"imagenet"`` reads torchvision's file from the torch hub cache
    (``$TORCH_HOME/hub/checkpoints/``) if it is there; a path reads a local state_dict
    (a torchvision ResNet's, with or without its ``fc`` weights, with or without BatchNorm's
    ``num_batches_tracked`` buffers). A file missing any real weight or buffer (conv/BN
    weights, BN running statistics) or holding a mis-shaped one is refused.
    """
    path = pretrained_weights_path(model.backbone_name, pretrained)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means an unusable file
        raise ConfigError(f"could not read pretrained weights {path!r}: {torch_load_problem(err)}") from err
    load_trunk_state(model, state, source=path)


def pretrained_weights_path(backbone: str, pretrained: str | os.PathLike) -> str:
    """The weights file `pretrained` names for `backbone`; ConfigError (one line) when there is
    none, it is missing or it is empty. Checked before a run folder is written
    (`mmhpn.config.check_config`) and when the weights are loaded."""
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}; valid backbones are {sorted(BACKBONES)}")
    _, weights, _ = BACKBONES[backbone]
    if weights is None:
        raise ConfigError(f"backbone {backbone} has no ImageNet weights; train it from random init "
                          "or fine-tune it from a pretraining run (TrainConfig.init_from)")
    if pretrained == "imagenet":
        filename = os.path.basename(weights.url)
        path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
        if not os.path.isfile(path):
            raise ConfigError(
                f"pretrained='imagenet' needs torchvision's {backbone} weights, which are not on this "
                f"machine and are never downloaded at run time. On a machine with internet, download {weights.url} "
                f"and either copy it to {path} or pass its path: build_model(..., pretrained='/path/{filename}')"
            )
    else:
        path = os.fspath(pretrained)
        if not os.path.isfile(path):
            raise ConfigError(f"pretrained weights file {path!r} does not exist (expected a torchvision ResNet state_dict)")
    if os.path.getsize(path) == 0:
        raise ConfigError(f"pretrained weights file {path!r} is empty (0 bytes: an interrupted download or copy?); "
                          "expected a torchvision ResNet state_dict")
    return path


def load_trunk_state(model: MMHPN, state, source: str = "the state_dict") -> None:
    """Load a trunk's weights (stem..layer4, never the heads) from a state_dict into `model`.

    Accepts torchvision ResNet names (conv1, bn1, layer1..4; fc ignored) or this module's own
    (stem.0, stem.1, layer1..4; ``heads.`` ignored, so another run's model can seed a
    fine-tuning). Every real trunk weight and buffer must be there with the right shape.
    """
    path = source
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"pretrained weights {path!r} hold a {type(state).__name__}, expected a state_dict")
    # torchvision names (conv1, bn1, layer1..4, fc) -> ours (stem.0, stem.1, layer1..4; fc dropped)
    renamed = {}
    for key, value in state.items():
        if key.startswith(("fc.", "heads.")):
            continue
        key = key.replace("conv1.", "stem.0.", 1) if key.startswith("conv1.") else key
        key = key.replace("bn1.", "stem.1.", 1) if key.startswith("bn1.") else key
        renamed[key] = value
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("heads.")}
    # BatchNorm's `num_batches_tracked` counters are not weights: files saved before torch
    # 0.4.1 (torchvision's original resnet50-19c8e357.pth, copies kept by older re-ID code)
    # lack them, and torch itself loads such files. They stay at the model's own value (0).
    missing = sorted(k for k in set(own) - set(renamed) if not k.endswith(".num_batches_tracked"))
    # The trunk's layer4 blocks after the model's last tap were dropped; their weights are not needed.
    dropped = tuple(f"layer4.{i}." for i in range(model.last_tap_index + 1, len(TAPS)))
    unexpected = sorted(k for k in set(renamed) - set(own) if not k.startswith(dropped))
    if missing or unexpected:
        raise ConfigError(
            f"pretrained weights {path!r} do not fit a {model.backbone_name} trunk: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in renamed.items():
        if key in own and own[key].shape != value.shape:
            raise ConfigError(f"pretrained weight {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    model.load_state_dict({k: v for k, v in renamed.items() if k in own}, strict=False)


def build_model(num_classes: int, preset: str = "mmhpn", backbone: str = "resnet50", pooling: str = "aps",
                pretrained: str | os.PathLike | None = None,
                layout: Mapping[str, Sequence[int] | int] | None = None) -> MMHPN:
    """Build an MMHPN-family model.

    Args:
        num_classes: number of training identities (one classifier output each).
        preset: a name from `PRESETS` (``baseline``, ``msm``, ``mhpm``, ``mmhpn``).
        backbone: ``resnet50`` (the paper's), ``resnet34``, ``resnet101``, or ``resnet34-l4w256`` /
            ``resnet34-l4w128`` (ResNet-34 with a narrower layer4, ours; no ImageNet weights).
        pooling: ``aps`` (Eq. 1), ``avg`` (GAP) or ``max`` (GMP), used by every stripe.
        pretrained: None (random init), ``"imagenet"`` (torchvision's file from the local
            torch hub cache; never downloaded) or a path to a local ResNet state_dict.
        layout: overrides the preset's {tap: stripe counts}, e.g. ``{"conv5_3": (12,)}``.
    """
    if layout is None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; valid presets are {sorted(PRESETS)} (or pass layout=...)")
        layout = PRESETS[preset]
    model = MMHPN(num_classes, layout, backbone=backbone, pooling=pooling)
    if pretrained is not None:
        load_pretrained_backbone(model, pretrained)
    return model
