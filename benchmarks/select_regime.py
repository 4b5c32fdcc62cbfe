"""Choose the book's fine-tuning schedule on a validation split of *training* identities, never on the test split.

Each candidate schedule fine-tunes the baseline and the full MMHPN layout (GAP + softmax, the
two ends of Table 4) over the replicates: replicate r fine-tunes with seed r from its own
pretraining run (pretraining seed r, the profile's pretraining schedule, `mmhpn.config`),
trunk frozen below layer4 and its layer3 maps cached, with ``val_fraction`` of the demo set's
*training* identities held out as the validation query/gallery (`mmhpn.data.split_validation`;
the test split is not read). Every epoch is scored on the validation identities
(``eval_every=1``), so the result also shows where validation mAP and the loss level off.

The rule (`mmhpn.paper.selection.choose_regime`, first written into this file before any of its
candidates had been trained, then moved to the library so the book re-applies the same code):

* candidates: the schedules given by ``--schedules`` (epochs:decay-epoch);
* metric: the validation mAP after the last epoch, mean over the replicates, per preset;
* a candidate qualifies when, for *every* preset, its mean is within ``--tolerance``
  (0.5 pp) of the best candidate's mean for that preset;
* choice: the qualifying schedule with the fewest epochs; a tie in epochs goes to the
  earlier decay. Which row wins, and any test-split number, play no part.

Writes ``benchmarks/results/regime-selection.json`` (every candidate, preset and replicate,
the curves, the seconds, the rule and the choice). Usage::

    python benchmarks/select_regime.py --schedules 5:3,6:4,7:4,10:7 --replicates 0,1,2
"""
from __future__ import annotations

import argparse
import statistics

import torch

from mmhpn.config import make_config
from mmhpn.paper.selection import REGIME_RULE, choose_regime, parse_schedule
from mmhpn.runs import train_or_load

from _results import write_result  # benchmarks/ is on sys.path when a script runs





def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--schedules", default="5:3,6:4,7:4,10:7", help="epochs:decay-epoch pairs, comma-separated")
    parser.add_argument("--presets", default="baseline,mmhpn")
    parser.add_argument("--replicates", default="0,1,2")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--tolerance", type=float, default=0.5, help="pp of validation mAP below the best")
    parser.add_argument("--runs-dir", default="runs/regime-selection")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    replicates = [int(s) for s in args.replicates.split(",")]
    results = []
    for text in args.schedules.split(","):
        epochs, decay = parse_schedule(text)
        for preset in args.presets.split(","):
            runs = [train_or_load(make_config(args.profile, preset=preset, pooling="avg", loss="softmax",
                                              val_fraction=args.val_fraction, epochs=epochs, lr_decay_epochs=decay,
                                              eval_every=1, seed=replicate), args.runs_dir, progress=False)
                    for replicate in replicates]
            final = [100 * run.metrics["mAP"] for run in runs]
            curves = [list(100 * run.history["mAP"].fillna(run.metrics["mAP"])) for run in runs]
            line = {
                "backbone": runs[0].config.backbone, "epochs": epochs, "lr_decay_epochs": list(decay), "preset": preset,
                "replicates": replicates,
                "pretraining": [run.config.init_from for run in runs],
                "val_mAP": final, "val_mAP_mean": statistics.mean(final),
                "val_mAP_std": statistics.stdev(final) if len(final) > 1 else 0.0,
                "val_mAP_per_epoch": [statistics.mean(c) for c in zip(*curves)],
                "loss_per_epoch": [statistics.mean(v) for v in zip(*(list(r.history["loss"]) for r in runs))],
                # as measured when each run trained (a cached run keeps its number); the first
                # run from a pretraining run includes computing its shared layer3 maps
                "train_seconds": [r.metrics["train_seconds"] for r in runs],
            }
            results.append(line)
            print(f"{epochs}ep {preset}: val mAP {line['val_mAP_mean']:.1f} +/- {line['val_mAP_std']:.2f} "
                  f"({', '.join(f'{v:.1f}' for v in final)}), per epoch "
                  f"{' '.join(f'{v:.1f}' for v in line['val_mAP_per_epoch'])}, "
                  f"{statistics.mean(line['train_seconds']):.0f} s of training per run", flush=True)
    chosen = choose_regime(results, args.tolerance)
    print(f"chosen: {chosen['epochs']} epochs, decay after {chosen['lr_decay_epochs']}", flush=True)
    path = write_result("regime-selection.json", {
        "profile": args.profile, "val_fraction": args.val_fraction, "replicates": replicates,
        "tolerance_pp": args.tolerance, "rule": REGIME_RULE.format(tolerance=args.tolerance),
        "results": results, "chosen": chosen})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
