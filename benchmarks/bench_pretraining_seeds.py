"""How much the fine-tuned baseline's test mAP moves with the pretraining seed, per pretraining schedule.

Issue 19's measurement: for each pretraining schedule given, replicate s pretrains the
synthetic stand-in for ImageNet with seed s and fine-tunes the demo baseline (Table 4's first
row, the demo profile's fine-tuning schedule) from it with seed s, exactly as the book's
replicates do; the result is the baseline's test mAP per replicate and its sd. The runs go
through the run cache (``--runs-dir``, default the book's ``runs``), so the current schedule's
runs are the book's own Table 4 baseline runs. Nothing is selected from these numbers: the
schedules were chosen on validation identities (``select_pretraining.py``); this records what
the choice did to the replicates' spread. Usage::

    python benchmarks/bench_pretraining_seeds.py --schedules 2,8:6,12:9 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import statistics

import torch

from mmhpn.config import pretraining_config
from mmhpn.paper import studies
from mmhpn.paper.compute_cost import pretraining_seed_configs
from mmhpn.paper.selection import parse_schedule
from mmhpn.paper.tables import get_table
from mmhpn.runs import load_run, pretraining_dir, run_dir_for, train_or_load

from _results import write_result  # benchmarks/ is on sys.path when a script runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", default="2,8:6,12:9",
                        help="pretraining epochs:decay-epoch, comma-separated ('2': the earlier 2 epochs, no decay)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    baseline = get_table("table4").rows[0]
    lines = []
    for text in args.schedules.split(","):
        epochs, decay = parse_schedule(text)
        maps, pretrain_seconds, names = [], [], []
        for config in pretraining_seed_configs(epochs, decay, seeds):
            run = train_or_load(config, args.runs_dir, progress=False)
            maps.append(100 * run.metrics["mAP"])
            names.append(run.path.name)
            pretraining = load_run(run_dir_for(pretraining_config(config.init_from), pretraining_dir(args.runs_dir)))
            pretrain_seconds.append(pretraining.metrics["train_seconds"])
        line = {"pretraining_epochs": epochs, "pretraining_lr_decay_epochs": list(decay), "seeds": seeds,
                "baseline_test_mAP": maps, "mean_baseline_mAP": statistics.mean(maps),
                "sd_of_baseline_mAP": statistics.stdev(maps), "pretraining_train_seconds": pretrain_seconds,
                # the folder names of the runs read, digested: the compute-cost page compares them with
                # the runs this code trains now (compute_cost.pretraining_seed_digest)
                "runs_digest": studies.runs_digest(names)}
        lines.append(line)
        print(f"pretraining {text}: baseline test mAP {', '.join(f'{m:.2f}' for m in maps)}; "
              f"mean {line['mean_baseline_mAP']:.2f}, sd {line['sd_of_baseline_mAP']:.2f}; pretraining "
              f"{statistics.mean(pretrain_seconds) / 60:.1f} min a run", flush=True)
    path = write_result("pretraining-seeds.json", {"profile": "demo", "row": baseline.label, "schedules": lines})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
