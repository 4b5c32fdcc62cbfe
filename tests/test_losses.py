"""Stripe softmax loss (Eq. 3) and Part Sensitive Loss (Eqs. 4-5)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmhpn.errors import ConfigError
from mmhpn.losses import PAPER_GAMMAS, PartSensitiveLoss, StripeCrossEntropy, build_loss


def _outputs(batch=4, classes=6, stripes=(8, 4, 2, 1), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, p, classes, generator=gen, requires_grad=True) for p in stripes]


def test_stripe_cross_entropy_is_the_sum_of_stripe_losses_over_the_batch():
    outputs, targets = _outputs(), torch.tensor([0, 1, 2, 3])
    by_hand = 0.0
    for logits in outputs:
        for j in range(logits.shape[1]):
            by_hand = by_hand + F.cross_entropy(logits[:, j], targets, reduction="sum")
    assert torch.allclose(StripeCrossEntropy()(outputs, targets), by_hand / 4)


@pytest.mark.parametrize("rule", ["ce", "literal", "focal"])
def test_psl_with_zero_gammas_equals_softmax_loss_exactly(rule):
    outputs, targets = _outputs(), torch.tensor([5, 1, 0, 3])
    psl = PartSensitiveLoss((0, 0, 0, 0), single_stripe=rule)(outputs, targets)
    ce = StripeCrossEntropy()(outputs, targets)
    assert torch.equal(psl, ce)


def test_psl_matches_eq_4_and_5_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]])  # 1 sample, 3 stripes, 2 classes
    target = torch.tensor([0])
    p = torch.softmax(logits[0], dim=1)[:, 0]
    q = torch.exp(p) / torch.exp(p).sum()
    expected = -((1 - q) ** 1.5 * torch.log(p)).sum()
    got = PartSensitiveLoss((1.5,))([logits], target)
    assert torch.allclose(got, expected)


def test_psl_down_weights_the_easiest_stripe_more_as_gamma_grows():
    # stripe 0 is the easiest (highest true-class probability)
    logits = torch.tensor([[[4.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]])
    log_p = F.log_softmax(logits, dim=2)[..., 0]
    ratios = []
    for gamma in (0.0, 0.5, 1.0, 2.0):
        w = PartSensitiveLoss((gamma,)).stripe_weights(log_p, gamma)[0]
        assert w.argmin() == 0  # easiest stripe gets the smallest factor
        ratios.append(float(w[0] / w[-1]))
    assert ratios[0] == 1.0
    assert all(later < earlier for earlier, later in zip(ratios, ratios[1:]))


def test_single_stripe_rules():
    outputs, targets = _outputs(stripes=(1,)), torch.tensor([0, 1, 2, 3])
    ce = StripeCrossEntropy()(outputs, targets)
    assert torch.equal(PartSensitiveLoss((2.0,), single_stripe="ce")(outputs, targets), ce)
    assert PartSensitiveLoss((2.0,), single_stripe="literal")(outputs, targets).item() == 0.0
    p = F.softmax(outputs[0][:, 0], dim=1).gather(1, targets[:, None]).squeeze(1)
    focal = -((1 - p) ** 2.0 * torch.log(p)).sum() / 4
    assert torch.allclose(PartSensitiveLoss((2.0,), single_stripe="focal")(outputs, targets), focal)


def test_gradients_are_finite_for_all_rules_and_flow_through_the_factor():
    for rule in ("ce", "literal", "focal"):
        outputs, targets = _outputs(), torch.tensor([0, 1, 2, 3])
        PartSensitiveLoss(PAPER_GAMMAS, single_stripe=rule)(outputs, targets).backward()
        assert all(torch.isfinite(o.grad).all() for o in outputs)
    # detach_weight changes the gradient but not the value
    a, b = _outputs(), _outputs()
    targets = torch.tensor([0, 1, 2, 3])
    la = PartSensitiveLoss(PAPER_GAMMAS)(a, targets)
    lb = PartSensitiveLoss(PAPER_GAMMAS, detach_weight=True)(b, targets)
    assert torch.equal(la, lb)
    la.backward()
    lb.backward()
    assert not torch.allclose(a[0].grad, b[0].grad)


def test_psl_is_smaller_than_softmax_loss_for_positive_gammas():
    outputs, targets = _outputs(), torch.tensor([0, 1, 2, 3])
    assert PartSensitiveLoss(PAPER_GAMMAS)(outputs, targets) < StripeCrossEntropy()(outputs, targets)


def test_loss_errors():
    outputs, targets = _outputs(), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ConfigError, match="4 scales"):
        PartSensitiveLoss((0.3, 0.5))(outputs, targets)
    with pytest.raises(ConfigError, match="non-negative"):
        PartSensitiveLoss((-1.0,))
    with pytest.raises(ConfigError, match="single_stripe"):
        PartSensitiveLoss((1.0,), single_stripe="zero")
    with pytest.raises(ConfigError, match="eval mode"):
        StripeCrossEntropy()(torch.randn(4, 10), targets)
    with pytest.raises(ConfigError, match="unknown loss"):
        build_loss("triplet")
    with pytest.raises(ConfigError, match="3 scales"):
        build_loss("psl", num_scales=3)
    assert isinstance(build_loss("psl", gammas=(1, 1, 1), num_scales=3), PartSensitiveLoss)
    assert math.isclose(sum(PAPER_GAMMAS), 4.3)


def test_psl_records_each_scales_mean_modulating_factor():
    outputs, targets = _outputs(), torch.tensor([0, 1, 2, 3])
    loss = PartSensitiveLoss(PAPER_GAMMAS)
    loss(outputs, targets)
    expected = []
    for logits, gamma in zip(outputs, PAPER_GAMMAS):
        p = torch.softmax(logits.detach(), dim=2).gather(2, targets.view(-1, 1, 1).expand(-1, logits.shape[1], 1))[..., 0]
        # one stripe with the default "ce" rule: factor 1; else (1 - q) ** gamma, q over the scale's stripes
        factor = torch.ones_like(p) if p.shape[1] == 1 else (1 - torch.softmax(p, dim=1)) ** gamma
        expected.append(factor.mean(dim=1))
    per_image = torch.stack(expected, dim=1)  # (images, scales): each image's mean over a scale's stripes
    assert torch.allclose(loss.last_image_factors, per_image)
    assert torch.allclose(loss.last_mean_factors, per_image.mean(dim=0))
    assert not loss.last_mean_factors.requires_grad and not loss.last_image_factors.requires_grad
    zero = PartSensitiveLoss((0, 0, 0, 0))
    zero(outputs, targets)
    assert torch.equal(zero.last_mean_factors, torch.ones(4))


def test_weighted_softmax_multiplies_each_scales_softmax_loss_by_its_constant():
    outputs, targets = _outputs(), torch.tensor([0, 1, 2, 3])
    weights = (0.9, 0.7, 0.4, 1.0)
    by_hand = sum(w * StripeCrossEntropy()([logits], targets) for logits, w in zip(outputs, weights))
    got = build_loss("weighted_softmax", scale_weights=weights, num_scales=4)(outputs, targets)
    assert torch.allclose(got, by_hand)
    assert torch.equal(StripeCrossEntropy((1, 1, 1, 1))(outputs, targets), StripeCrossEntropy()(outputs, targets))
    with pytest.raises(ConfigError, match="needs scale_weights"):
        build_loss("weighted_softmax")
    with pytest.raises(ConfigError, match="one scale weight per scale"):
        build_loss("weighted_softmax", scale_weights=(1.0, 1.0), num_scales=4)
    with pytest.raises(ConfigError, match="2 scale weights"):
        StripeCrossEntropy((1.0, 1.0))(outputs, targets)
    with pytest.raises(ConfigError, match="finite non-negative"):
        StripeCrossEntropy((1.0, -0.5))
