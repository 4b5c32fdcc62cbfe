"""Choose the schedule of the synthetic stand-in for ImageNet pretraining on *pretraining* identities.

The book's trunk is pretrained on the ``pretrain`` synthetic set (1,000 identities, none a
test identity of the demo split) before every row fine-tunes from it. This script trains the
pretraining run under each candidate schedule with ``val_fraction`` of the *pretraining*
identities held out as a validation query/gallery (the demo set, its test split included,
is never read), scores the validation identities after every epoch, and applies the rule
below. The rule was written into this file before any of its candidates had been trained, then
moved to the library (`mmhpn.paper.selection.choose_pretraining`) so the book re-applies the same code.

The rule:

* candidates: the schedules given by ``--schedules`` (epochs:decay-epoch), each trained with
  every seed of ``--seeds``;
* metric: the validation mAP after the last epoch, mean over the seeds;
* the plateau: the best candidate's mean minus ``--tolerance`` (1.0 pp);
* choice: the shortest schedule (fewest epochs) whose mean reaches the plateau; a tie in
  epochs goes to the earlier decay (the lr decays for longer).

Writes ``benchmarks/results/pretraining-selection.json`` (every candidate, every seed, its
curve, its seconds, and the choice). Usage::

    python benchmarks/select_pretraining.py --schedules 3:2,4:3,6:4,8:6 --seeds 0,1
"""
from __future__ import annotations

import argparse
import statistics

import torch

from mmhpn.config import pretrain_overrides, pretraining_config
from mmhpn.paper.selection import PRETRAINING_RULE, choose_pretraining, parse_schedule
from mmhpn.runs import train_or_load

from _results import write_result  # benchmarks/ is on sys.path when a script runs





def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--schedules", default="3:2,4:3,6:4,8:6", help="epochs:decay-epoch pairs, comma-separated")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--tolerance", type=float, default=1.0, help="pp of validation mAP below the best")
    parser.add_argument("--runs-dir", default="runs/pretraining-selection")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    candidates = []
    for text in args.schedules.split(","):
        epochs, decay = parse_schedule(text)
        runs = []
        for seed in seeds:
            init_from = pretrain_overrides(args.profile, epochs=epochs, lr_decay_epochs=list(decay), seed=seed,
                                           val_fraction=args.val_fraction, eval_every=1)
            runs.append(train_or_load(pretraining_config(init_from), args.runs_dir, progress=False))
        final = [100 * run.metrics["mAP"] for run in runs]
        curves = [list(100 * run.history["mAP"].fillna(run.metrics["mAP"])) for run in runs]
        candidate = {
            "epochs": epochs, "lr_decay_epochs": list(decay), "seeds": seeds,
            "val_mAP": final, "val_mAP_mean": statistics.mean(final),
            "val_mAP_std": statistics.stdev(final) if len(final) > 1 else 0.0,
            "val_rank1": [100 * run.metrics["rank1"] for run in runs],
            "val_mAP_per_epoch": [statistics.mean(c) for c in zip(*curves)],
            "val_mAP_per_epoch_per_seed": curves,
            "loss_per_epoch": [statistics.mean(v) for v in zip(*(list(r.history["loss"]) for r in runs))],
            "train_seconds": [r.metrics["train_seconds"] for r in runs],
        }
        candidates.append(candidate)
        print(f"pretraining {text}: val mAP {candidate['val_mAP_mean']:.1f} +/- {candidate['val_mAP_std']:.2f} "
              f"({', '.join(f'{v:.1f}' for v in final)}), per epoch "
              f"{' '.join(f'{v:.1f}' for v in candidate['val_mAP_per_epoch'])}, "
              f"{statistics.mean(candidate['train_seconds']):.0f} s per run", flush=True)
    chosen = choose_pretraining(candidates, args.tolerance)
    print(f"chosen: {chosen['epochs']} epochs, decay after {chosen['lr_decay_epochs']}", flush=True)
    path = write_result("pretraining-selection.json", {
        "profile": args.profile, "val_fraction": args.val_fraction, "tolerance_pp": args.tolerance,
        "rule": PRETRAINING_RULE.format(tolerance=args.tolerance), "candidates": candidates,
        "chosen": {"epochs": chosen["epochs"], "lr_decay_epochs": chosen["lr_decay_epochs"]}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
