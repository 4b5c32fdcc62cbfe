"""The rules that chose the demo regime on validation identities, never on the test split.

Two selections, each a script in ``benchmarks/`` that trains its candidates and records
the result in ``mmhpn/resources/``, and a rule here, written before its candidates trained:

* the pretraining schedule (`choose_pretraining`, ``benchmarks/select_pretraining.py``): the
  synthetic stand-in for ImageNet trained with a fifth of the *pretraining* identities held
  out, scored on them after every epoch;
* the fine-tuning schedule (`choose_regime`, ``benchmarks/select_regime.py``): the baseline and
  the full MMHPN layout fine-tuned with a fifth of the demo set's *training* identities held
  out, over replicates that each start from their own pretraining run.

The book's training page reads the records and re-applies these rules (`mmhpn.paper.views`),
and a test checks that the demo profile's schedules are the rules' output.
"""
from __future__ import annotations

from typing import Mapping, Sequence

PRETRAINING_RULE = ("the shortest schedule whose validation mAP after its last epoch (mean over seeds, on held-out "
                    "pretraining identities) is within {tolerance} pp of the best candidate's; ties in epochs go to "
                    "the earlier lr decay")
REGIME_RULE = ("the schedule with the fewest epochs whose validation mAP after its last epoch (mean over replicates) "
               "is within {tolerance} pp of the best candidate's for every preset; ties in epochs go to the earlier "
               "lr decay")


VARIANT_RULE = ("a proxy-study variant that qualifies under the adoption rule (mmhpn.paper.proxy.ADOPTION_RULE) "
                "replaces the demo regime only if, fine-tuned with the demo schedule on the same validation "
                "identities over the same replicates, its validation mAP after the last epoch (mean over replicates) "
                "is at least the default's minus {tolerance} pp for every preset; otherwise the default stays "
                "(written before any validation run of a variant had trained)")


PRETRAINING_INPUT_RULE = ("a cheaper pretraining input (the stand-in for ImageNet trained on downscaled images for all "
                          "or the first epochs of its schedule, the schedule unchanged) replaces the default's, the "
                          "fine-tuning input, only if, fine-tuned with the demo schedule on the same validation "
                          "identities over the same replicates (each from its own pretraining run at that input), its "
                          "validation mAP after the last epoch (mean over replicates) is at least the default's minus "
                          "{tolerance} pp for every preset; among those that qualify, the one with the fewest "
                          "pixel-epochs (pixels per image times epochs, summed over the schedule); otherwise the "
                          "default stays (written before any candidate had trained; the tie-break read 'the fewest "
                          "pixels' until 2026-12-03, when, after the 64x32 candidate had failed and before the "
                          "half-size-epochs candidate trained, it was generalised to candidates that change input "
                          "within the schedule; it ranks the same inputs the same way)")


def choose_pretraining_input(default: Sequence[Mapping], candidates: Mapping[str, Sequence[Mapping]],
                             tolerance: float, pixel_epochs: Mapping[str, int]) -> str | None:
    """`PRETRAINING_INPUT_RULE`: the qualifying candidate (a key of `candidates`, each with its
    validation lines as `keeps_up` reads them) with the fewest `pixel_epochs`, or None (the default stays)."""
    qualifying = [name for name, lines in candidates.items() if keeps_up(default, lines, tolerance)]
    return min(qualifying, key=lambda name: pixel_epochs[name]) if qualifying else None


def pretraining_pixel_epochs(config) -> int:
    """What a pretraining run's schedule costs in pixels: per epoch, the pixels of one
    training image at that epoch's input (`TrainConfig.half_size_epochs`), summed."""
    full, half = config.height * config.width, config.half_size[0] * config.half_size[1]
    return config.half_size_epochs * half + (config.epochs - config.half_size_epochs) * full


def parse_input(size: str) -> tuple[int, int]:
    """'64x32' -> (64, 32): an input's height and width."""
    height, _, width = size.partition("x")
    return int(height), int(width)


def keeps_up(default: Sequence[Mapping], variant: Sequence[Mapping], tolerance: float) -> bool:
    """`VARIANT_RULE`: whether the variant's lines (`preset`, `val_mAP_mean`) reach the default's
    within `tolerance` pp for every preset the default has."""
    ours = {line["preset"]: line["val_mAP_mean"] for line in variant}
    return all(line["preset"] in ours and ours[line["preset"]] >= line["val_mAP_mean"] - tolerance
               for line in default)


def parse_schedule(text: str) -> tuple[int, tuple[int, ...]]:
    """'6:4' -> 6 epochs, lr decay after epoch 4; '6' -> no decay."""
    epochs, _, decay = text.partition(":")
    return int(epochs), tuple(int(d) for d in decay.split("+") if d)


def schedule_label(epochs: int, decay: Sequence[int]) -> str:
    """The inverse of `parse_schedule`: 6, (4,) -> '6:4'; 6, () -> '6'."""
    return f"{epochs}:{'+'.join(str(d) for d in decay)}" if decay else str(epochs)


def _order(epochs: int, decay: Sequence[int]) -> tuple:
    # fewest epochs first; among equal epochs the earlier decay (no decay counts as after the last epoch)
    return epochs, tuple(decay) or (epochs,)


def choose_pretraining(candidates: Sequence[Mapping], tolerance: float) -> dict:
    """`PRETRAINING_RULE` applied to candidates with `epochs`, `lr_decay_epochs`, `val_mAP_mean`."""
    best = max(c["val_mAP_mean"] for c in candidates)
    reaching = [c for c in candidates if c["val_mAP_mean"] >= best - tolerance]
    chosen = min(reaching, key=lambda c: _order(c["epochs"], c["lr_decay_epochs"]))
    return {"epochs": chosen["epochs"], "lr_decay_epochs": list(chosen["lr_decay_epochs"])}


def choose_regime(results: Sequence[Mapping], tolerance: float) -> dict:
    """`REGIME_RULE` applied to result lines with `epochs`, `lr_decay_epochs`, `preset` and
    `val_mAP_mean`; returns the chosen schedule."""
    best: dict[str, float] = {}
    for line in results:
        best[line["preset"]] = max(best.get(line["preset"], float("-inf")), line["val_mAP_mean"])
    qualifies: dict[tuple, bool] = {}
    for line in results:
        key = (line["epochs"], tuple(line["lr_decay_epochs"]))
        qualifies[key] = qualifies.get(key, True) and line["val_mAP_mean"] >= best[line["preset"]] - tolerance
    epochs, decay = min((key for key, ok in qualifies.items() if ok), key=lambda k: _order(*k))
    return {"epochs": epochs, "lr_decay_epochs": list(decay)}
