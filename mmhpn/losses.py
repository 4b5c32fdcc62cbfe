"""The training losses: the stripe softmax loss (Eqs. 2-3) and the Part Sensitive Loss (Eqs. 4-5).

Both take the model's training output, a list with one logits tensor per scale shaped
(batch, stripes, num_classes), and the identity targets (batch,).

Softmax loss (Eq. 3): every stripe of every scale is an independent classifier;
``L = -(1/M) * sum_{b, i, j} log p_bij`` with ``p_bij`` the softmax probability of the true
identity from stripe j of scale i, M the batch size.

Part Sensitive Loss (Eqs. 4-5), read as in the reading notes:

    q_ij = exp(p_ij) / sum_{j'} exp(p_ij')        (softmax over the P_i stripes of scale i)
    PSL  = -(1/M) * sum_{b, i, j} (1 - q_ij) ** gamma_i * log p_ij

``q`` measures how easy a stripe is *relative to the other stripes of the same scale*,
and the modulating factor shrinks the loss of the easy ones. Choices the paper leaves open:

* Gradients flow through the modulating factor, as in focal loss (the paper cites it and
  says nothing else); ``detach_weight=True`` treats it as a constant instead.
* One gamma per scale. The paper sets "0.3, 0.5, 1.5, 2.0 respectively" right after listing
  the scales as "8, 4, 2 and 1 stripe(s) respectively", so we give 0.3 to the 8-stripe scale,
  0.5 to the 4-stripe scale, 1.5 to the 2-stripe scale and 2.0 to the 1-stripe scale
  (`PAPER_GAMMAS`, in the `mmhpn` preset's scale order: conv5_1's 8 and 4 stripes, conv5_2's 2,
  conv5_3's 1). Gammas follow the scales, not the taps: any layout listing its scales as
  8, 4, 2, 1 (the ``mhpm`` preset too) gets the same gammas.
* A single-stripe scale has q = 1, so the literal formula gives it a zero loss for any
  gamma > 0 and the global stripe would never be trained. `single_stripe` picks the rule:
  ``"ce"`` (default) - plain softmax loss for such scales (factor 1; gamma unused);
  ``"literal"`` - the formula as written (factor 0 when gamma > 0);
  ``"focal"`` - focal loss on the stripe's own probability, factor ``(1 - p) ** gamma``.
* Note that q is a softmax of probabilities in [0, 1], so with P stripes it never exceeds
  e / (e + P - 1): the down-weighting is gentler than the paper's worked examples suggest.

With every gamma 0 the PSL equals the softmax loss exactly, whatever the rule.

The PSL records, after each forward pass, the batch's mean modulating factor per scale
(`PartSensitiveLoss.last_mean_factors`, the mean over images and that scale's stripes) and
each image's mean over the scale's stripes (`last_image_factors`); the training loop logs
per epoch the mean (``psl_factor_<i>`` in ``history.csv``) and the spread over images
(``psl_factor_sd_<i>``).

Weighted softmax loss (ours, a control for the PSL; not in the paper):
``L = -(1/M) * sum_{b, i, j} w_i * log p_bij`` with one *constant* ``w_i`` per scale. With
``w_i`` set to the mean PSL factor of scale i measured over a PSL training run
(`mmhpn.paper.planner.psl_scale_weights`), it re-weights the scales as the PSL does on
average, without the PSL's per-stripe, per-image focusing: if the PSL beats it, the gain
comes from the focusing, not from re-weighting the scales.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmhpn.errors import ConfigError

PAPER_GAMMAS = (0.3, 0.5, 1.5, 2.0)
SINGLE_STRIPE_RULES = ("ce", "literal", "focal")
LOSSES = ("softmax", "psl", "weighted_softmax")  # the names `build_loss` accepts


def _check_outputs(outputs: Sequence[torch.Tensor], targets: torch.Tensor) -> None:
    if isinstance(outputs, torch.Tensor) or not outputs:
        raise ConfigError("loss expects the training-mode output: a non-empty list of (batch, stripes, classes) "
                          "tensors, one per scale (is the model in eval mode?)")
    for logits in outputs:
        if logits.dim() != 3 or logits.shape[0] != targets.shape[0]:
            raise ConfigError(f"each scale's logits must be (batch={targets.shape[0]}, stripes, classes), "
                              f"got {tuple(logits.shape)}")


def _stripe_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(batch, stripes) log-probability of the true identity per stripe."""
    log_probs = F.log_softmax(logits.float(), dim=2)
    index = targets.view(-1, 1, 1).expand(-1, logits.shape[1], 1)
    return log_probs.gather(2, index).squeeze(2)


class StripeCrossEntropy(nn.Module):
    """Eq. 3: the sum over all stripes of their softmax losses, averaged over the batch.

    With `scale_weights` (one non-negative constant per scale, in the model's scale order)
    each scale's softmax loss is multiplied by its constant: the weighted softmax control.
    """

    def __init__(self, scale_weights: Sequence[float] | None = None):
        super().__init__()
        if scale_weights is not None:
            scale_weights = tuple(float(w) for w in scale_weights)
            if not scale_weights or any(not math.isfinite(w) or w < 0 for w in scale_weights):
                raise ConfigError(f"scale_weights must be a non-empty sequence of finite non-negative numbers, "
                                  f"got {scale_weights}")
        self.scale_weights = scale_weights

    def forward(self, outputs: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        _check_outputs(outputs, targets)
        weights = self.scale_weights
        if weights is None:
            weights = (1.0,) * len(outputs)
        elif len(weights) != len(outputs):
            raise ConfigError(f"the weighted softmax loss has {len(weights)} scale weights {weights} but the model "
                              f"has {len(outputs)} scales; give one weight per scale, in the model's scale order")
        total = sum(-w * _stripe_log_probs(logits, targets).sum() for logits, w in zip(outputs, weights))
        return total / targets.shape[0]


class PartSensitiveLoss(nn.Module):
    """Eqs. 4-5: the stripe softmax loss with easy stripes down-weighted (see module docstring).

    Args:
        gammas: one focusing parameter per scale, in the model's scale order, each in [0, 2]
            (the paper's range; larger values are accepted with no check beyond >= 0).
        single_stripe: the rule for scales with one stripe: ``"ce"``, ``"literal"`` or ``"focal"``.
        detach_weight: treat the modulating factor as a constant in the backward pass.
    """

    def __init__(self, gammas: Sequence[float] = PAPER_GAMMAS, single_stripe: str = "ce",
                 detach_weight: bool = False):
        super().__init__()
        gammas = tuple(float(g) for g in gammas)
        if not gammas or not all(math.isfinite(g) and g >= 0 for g in gammas):
            raise ConfigError(f"gammas must be a non-empty sequence of finite non-negative numbers, got {gammas}")
        if single_stripe not in SINGLE_STRIPE_RULES:
            raise ConfigError(f"unknown single_stripe rule {single_stripe!r}; valid rules are {list(SINGLE_STRIPE_RULES)}")
        self.gammas = gammas
        self.single_stripe = single_stripe
        self.detach_weight = detach_weight
        # (num_scales,) mean modulating factor of the last batch per scale, detached (see docstring)
        self.last_mean_factors: torch.Tensor | None = None
        # (batch, num_scales) each image's mean factor over a scale's stripes, detached: its
        # spread over images says whether the PSL weighs images differently at all
        self.last_image_factors: torch.Tensor | None = None

    def stripe_weights(self, log_p: torch.Tensor, gamma: float) -> torch.Tensor:
        """The modulating factor (batch, stripes) of one scale, given its log p (batch, stripes)."""
        p = log_p.exp()
        if p.shape[1] == 1 and self.single_stripe == "ce":
            return torch.ones_like(p)
        if p.shape[1] == 1 and self.single_stripe == "literal":
            return torch.zeros_like(p)  # q = 1, so (1 - q) ** gamma = 0 for gamma > 0
        easiness = p if p.shape[1] == 1 else torch.softmax(p, dim=1)  # "focal" rule, or Eq. 4
        # The floor keeps the gradient of x ** gamma finite (gamma < 1) where a stripe is certain.
        weight = (1 - easiness).clamp_min(1e-12) ** gamma
        return weight.detach() if self.detach_weight else weight

    def forward(self, outputs: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        _check_outputs(outputs, targets)
        if len(outputs) != len(self.gammas):
            raise ConfigError(f"PartSensitiveLoss has {len(self.gammas)} gammas {self.gammas} but the model "
                              f"has {len(outputs)} scales; give one gamma per scale, in the model's scale order")
        total = 0.0
        image_factors = []
        for logits, gamma in zip(outputs, self.gammas):
            log_p = _stripe_log_probs(logits, targets)
            if gamma == 0:  # exactly the softmax loss (0 ** 0 == 1 even where q == 1)
                total = total - log_p.sum()
                image_factors.append(torch.ones(log_p.shape[0], device=log_p.device))
            else:
                weight = self.stripe_weights(log_p, gamma)
                total = total - (weight * log_p).sum()
                image_factors.append(weight.detach().float().mean(dim=1))
        self.last_image_factors = torch.stack(image_factors, dim=1)
        self.last_mean_factors = self.last_image_factors.mean(dim=0)
        return total / targets.shape[0]


def build_loss(name: str, gammas: Sequence[float] | None = None, single_stripe: str = "ce",
               num_scales: int | None = None, scale_weights: Sequence[float] | None = None) -> nn.Module:
    """``"softmax"`` -> `StripeCrossEntropy`; ``"psl"`` -> `PartSensitiveLoss`;
    ``"weighted_softmax"`` -> `StripeCrossEntropy` with one constant weight per scale.

    With ``gammas=None`` the PSL uses `PAPER_GAMMAS`, which fit four scales (the ``mmhpn`` and
    ``mhpm`` presets); other layouts must pass their own gammas (checked against `num_scales`).
    ``scale_weights`` (weighted softmax only) are checked against `num_scales` the same way.
    """
    if name == "softmax":
        return StripeCrossEntropy()
    if name == "weighted_softmax":
        if scale_weights is None:
            raise ConfigError("loss 'weighted_softmax' needs scale_weights, one constant per scale")
        if num_scales is not None and len(scale_weights) != num_scales:
            raise ConfigError(f"loss 'weighted_softmax' needs one scale weight per scale: the model has "
                              f"{num_scales} scales, got scale_weights {tuple(scale_weights)}")
        return StripeCrossEntropy(scale_weights)
    if name == "psl":
        gammas = PAPER_GAMMAS if gammas is None else tuple(gammas)
        if num_scales is not None and len(gammas) != num_scales:
            raise ConfigError(f"loss 'psl' needs one gamma per scale: the model has {num_scales} scales, "
                              f"got gammas {tuple(gammas)}")
        return PartSensitiveLoss(gammas, single_stripe=single_stripe)
    raise ConfigError(f"unknown loss {name!r}; valid losses are {list(LOSSES)}")
