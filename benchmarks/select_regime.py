"""Choose the book's CPU regime on a validation split of *training* identities, never on the test split.

Each candidate regime fine-tunes the baseline and the full MMHPN layout (GAP + softmax, the
two ends of Table 4) from a pretraining run, trunk frozen below layer4 and its layer3 maps
cached, over several seeds, with ``val_fraction`` of the demo set's *training* identities
held out as the validation query/gallery (`mmhpn.data.split_validation`; the test split is
not read). Every epoch is scored on the validation identities (``eval_every=1``), so the
result shows where validation mAP and the training loss level off.

Reported per regime and preset: the final validation mAP of each seed, their mean and
standard deviation, the validation mAP after each epoch (mean over seeds), the training loss
per epoch, and the training seconds of each run and of the pretraining (as measured when they
trained; evaluations excluded). The criteria for the choice are convergence (a plateau of validation mAP and
loss), seed-to-seed noise and seconds per run - never which row wins.

Writes ``benchmarks/results/regime-selection.json``; the recorded result the book shows is
``mmhpn/resources/regime-selection.json`` (copy a new result there). Usage::

    python benchmarks/select_regime.py --backbones resnet34-l4w128,resnet34-l4w256 --schedules 6:4,10:7
"""
from __future__ import annotations

import argparse
import statistics

import torch

from mmhpn.config import make_config, pretrain_overrides, pretraining_config
from mmhpn.runs import train_or_load

from _results import write_result  # benchmarks/ is on sys.path when a script runs


def schedule(text: str) -> tuple[int, tuple[int, ...]]:
    """'6:4' -> 6 epochs, lr decay after epoch 4; '6' -> no decay."""
    epochs, _, decay = text.partition(":")
    return int(epochs), tuple(int(d) for d in decay.split("+") if d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="resnet34-l4w128,resnet34-l4w256")
    parser.add_argument("--schedules", default="6:4,10:7", help="epochs:decay-epoch pairs, comma-separated")
    parser.add_argument("--presets", default="baseline,mmhpn")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--runs-dir", default="runs/regime-selection")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for backbone in args.backbones.split(","):
        init_from = pretrain_overrides("demo", backbone=backbone, epochs=args.pretrain_epochs)
        pretraining = train_or_load(pretraining_config(init_from), args.runs_dir, progress=False)
        pretrain_seconds = pretraining.metrics["train_seconds"]  # as measured when it trained
        print(f"{backbone}: pretraining {pretrain_seconds:.0f} s, its test mAP {pretraining.metrics['mAP']:.3f}",
              flush=True)
        for text in args.schedules.split(","):
            epochs, decay = schedule(text)
            for preset in args.presets.split(","):
                runs = []
                for seed in seeds:
                    config = make_config("demo", backbone=backbone, preset=preset, pooling="avg", loss="softmax",
                                         init_from=init_from, freeze_below_layer4=True, feature_cache=True,
                                         val_fraction=args.val_fraction, epochs=epochs, lr_decay_epochs=decay,
                                         lr=args.lr, eval_every=1, seed=seed)
                    runs.append(train_or_load(config, args.runs_dir, progress=False))
                final = [100 * run.metrics["mAP"] for run in runs]
                curves = [list(100 * run.history["mAP"].fillna(run.metrics["mAP"])) for run in runs]
                row = {
                    "backbone": backbone, "epochs": epochs, "lr_decay_epochs": list(decay), "preset": preset,
                    "val_mAP": final, "val_mAP_mean": statistics.mean(final),
                    "val_mAP_std": statistics.stdev(final) if len(final) > 1 else 0.0,
                    "val_mAP_per_epoch": [statistics.mean(c) for c in zip(*curves)],
                    "loss_per_epoch": [statistics.mean(v) for v in zip(*(list(r.history["loss"]) for r in runs))],
                    # as measured when each run trained (a cached run keeps its number); the
                    # first run of a backbone includes computing the shared layer3 maps
                    "train_seconds": [r.metrics["train_seconds"] for r in runs],
                    "pretrain_seconds": pretrain_seconds, "pretrain_test_mAP": 100 * pretraining.metrics["mAP"],
                }
                results.append(row)
                print(f"{backbone} {epochs}ep {preset}: val mAP {row['val_mAP_mean']:.1f} +/- {row['val_mAP_std']:.2f} "
                      f"({', '.join(f'{v:.1f}' for v in final)}), per epoch "
                      f"{' '.join(f'{v:.1f}' for v in row['val_mAP_per_epoch'])}, "
                      f"{statistics.mean(row['train_seconds']):.0f} s of training per run", flush=True)
    path = write_result("regime-selection.json", {"val_fraction": args.val_fraction, "seeds": seeds,
                                                  "lr": args.lr, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
