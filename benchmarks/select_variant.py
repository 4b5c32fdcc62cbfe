"""Issue #20, item 3: does a proxy-study variant that qualifies under the adoption rule keep up
with the default regime on validation identities? (`mmhpn.paper.selection.VARIANT_RULE`)

The baseline and the full MMHPN layout (GAP + softmax, as `select_regime.py`) are fine-tuned
with the demo schedule over the replicates, each from its own pretraining run, with a fifth of
the demo set's *training* identities held out as validation query/gallery (the test split is
not read), once under the default regime and once under the variant's fields
(`mmhpn.paper.proxy.variant_common`: e.g. its own pretraining runs). The default's runs are
those of the recorded regime selection (the run cache finds them). Writes
``benchmarks/results/variant-selection.json`` (both regimes' validation mAP, the rule and its
outcome). Usage::

    python benchmarks/select_variant.py --variant "objects pretraining"
"""
from __future__ import annotations

import argparse
import statistics

from mmhpn.config import make_config
from mmhpn.paper import proxy
from mmhpn.paper.selection import VARIANT_RULE, keeps_up
from mmhpn.runs import train_or_load

from _results import write_result  # benchmarks/ is on sys.path when a script runs


def validation_lines(variant: proxy.Variant, profile: str, presets: list[str], replicates: list[int],
                     val_fraction: float, runs_dir: str) -> list[dict]:
    lines = []
    for preset in presets:
        runs = [train_or_load(make_config(profile, preset=preset, pooling="avg", loss="softmax",
                                          val_fraction=val_fraction, eval_every=1, seed=replicate,
                                          **proxy.variant_common(variant, profile, replicate)),
                              runs_dir, progress=False)
                for replicate in replicates]
        final = [100 * run.metrics["mAP"] for run in runs]
        lines.append({"variant": variant.name, "preset": preset, "replicates": replicates, "val_mAP": final,
                      "val_mAP_mean": statistics.mean(final),
                      "pretraining": [run.config.init_from for run in runs]})
        print(f"{variant.name} {preset}: val mAP {lines[-1]['val_mAP_mean']:.1f} "
              f"({', '.join(f'{v:.1f}' for v in final)})", flush=True)
    return lines


def validation_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a comparison with the default regime on validation identities (this
    script's and `select_pretraining_input.py`'s): profile, presets, replicates, held-out
    fraction, tolerance and the runs folder (the regime selection's, so the default's runs
    are found)."""
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--presets", default="baseline,mmhpn")
    parser.add_argument("--replicates", default="0,1,2")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--tolerance", type=float, default=0.5, help="pp of validation mAP below the default's")
    parser.add_argument("--runs-dir", default="runs/regime-selection")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", required=True, help="a proxy-study variant's name")
    validation_arguments(parser)
    args = parser.parse_args()
    presets, replicates = args.presets.split(","), [int(s) for s in args.replicates.split(",")]
    default = validation_lines(proxy.get_variant(proxy.DEFAULT), args.profile, presets, replicates,
                               args.val_fraction, args.runs_dir)
    variant = validation_lines(proxy.get_variant(args.variant), args.profile, presets, replicates,
                               args.val_fraction, args.runs_dir)
    adopted = keeps_up(default, variant, args.tolerance)
    print(f"{args.variant}: {'keeps up with' if adopted else 'falls behind'} the default on validation", flush=True)
    path = write_result("variant-selection.json", {
        "profile": args.profile, "val_fraction": args.val_fraction, "tolerance_pp": args.tolerance,
        "rule": VARIANT_RULE.format(tolerance=args.tolerance), "default": default, "variant": variant,
        "adopted": adopted})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
