"""Issue #19's saving: pretrain the stand-in for ImageNet on smaller inputs? Chosen on validation identities.

Three 12-epoch pretraining runs at 128x64 are about two thirds of a fresh machine's first
build (57 of 80 min on a 2-core AMD EPYC); at 64x32 a step has a quarter of the pixels.
Two kinds of candidate: every epoch at a smaller input (``--inputs``), or the first N
epochs at half the height and width and the rest at the fine-tuning input (``--half-size-epochs``,
progressive resizing, `TrainConfig.half_size_epochs`). Whether the trunk a candidate gives
is as good a start is decided here on validation identities, by
`mmhpn.paper.selection.PRETRAINING_INPUT_RULE` (written, with this script, before any
candidate trained; its tie-break generalised before the half-size candidate trained, as
the rule says): the baseline and the full MMHPN layout (GAP + softmax, as
`select_regime.py`) are fine-tuned at the profile's input with the demo schedule over the
replicates, with a fifth of the demo set's *training* identities held out as the validation
query/gallery (the test split is not read), once from the default pretraining runs and once
from each candidate's pretraining runs (same schedule, same seeds, same held-out
*pretraining* identities, downscaled images). Writes
``benchmarks/results/pretraining-input-selection.json`` (both regimes' validation mAP, the
pretraining minutes and pixel-epochs, the rule and its outcome). Usage::

    python benchmarks/select_pretraining_input.py --inputs 64x32 --half-size-epochs 9,8,6
"""
from __future__ import annotations

import argparse
import statistics

import torch

from mmhpn.config import pretraining_config
from mmhpn.paper import proxy
from mmhpn.paper.selection import (PRETRAINING_INPUT_RULE, choose_pretraining_input, parse_input,
                                   pretraining_pixel_epochs)
from mmhpn.runs import load_run, pretraining_dir, run_dir_for

from _results import write_result  # benchmarks/ is on sys.path when a script runs
from select_variant import validation_arguments, validation_lines


def pretraining_minutes(lines: list[dict], runs_dir: str) -> list[float]:
    """Each replicate's pretraining time (as measured when it trained), in minutes."""
    return [load_run(run_dir_for(pretraining_config(init_from), pretraining_dir(runs_dir))).metrics["train_seconds"]
            / 60 for init_from in lines[0]["pretraining"]]


def pixel_epochs(lines: list[dict]) -> int:
    """The pixel-epochs of the lines' pretraining schedule (the same for every replicate)."""
    return pretraining_pixel_epochs(pretraining_config(lines[0]["pretraining"][0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", default="64x32", help="candidate pretraining inputs HxW for every epoch, "
                        "comma-separated ('' for none)")
    parser.add_argument("--half-size-epochs", default="9", help="candidate numbers of first epochs at half the "
                        "height and width, comma-separated ('' for none)")
    validation_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presets, replicates = args.presets.split(","), [int(s) for s in args.replicates.split(",")]
    default = validation_lines(proxy.get_variant(proxy.DEFAULT), args.profile, presets, replicates,
                               args.val_fraction, args.runs_dir)
    variants = {}
    for size in filter(None, args.inputs.split(",")):
        height, width = parse_input(size)
        variants[size] = proxy.Variant(f"pretraining at {size}", "", f"the stand-in for ImageNet pretrained at {size}",
                                       pretrain={"height": height, "width": width})
    for epochs in filter(None, args.half_size_epochs.split(",")):
        name = f"half size for {epochs} epochs"
        variants[name] = proxy.Variant(f"pretraining at {name}", "", "the stand-in for ImageNet pretrained at half "
                                       f"the height and width for its first {epochs} epochs",
                                       pretrain={"half_size_epochs": int(epochs)})
    candidates = {name: validation_lines(variant, args.profile, presets, replicates, args.val_fraction, args.runs_dir)
                  for name, variant in variants.items()}
    costs = {"default": pixel_epochs(default), **{name: pixel_epochs(lines) for name, lines in candidates.items()}}
    chosen = choose_pretraining_input(default, candidates, args.tolerance, costs)
    print(f"chosen: {chosen or 'the default input'}", flush=True)
    minutes = {"default": pretraining_minutes(default, args.runs_dir),
               **{size: pretraining_minutes(lines, args.runs_dir) for size, lines in candidates.items()}}
    for name, values in minutes.items():
        print(f"pretraining {name}: {statistics.mean(values):.1f} min a run", flush=True)
    path = write_result("pretraining-input-selection.json", {
        "profile": args.profile, "val_fraction": args.val_fraction, "tolerance_pp": args.tolerance,
        "rule": PRETRAINING_INPUT_RULE.format(tolerance=args.tolerance), "default": default,
        "candidates": candidates, "pretraining_minutes": minutes, "pixel_epochs": costs, "chosen": chosen})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
