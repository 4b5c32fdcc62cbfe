"""The training commands: `mmhpn synth` (the synthetic benchmark), `train`, `pretrain` (the
stand-in for ImageNet pretraining) and `evaluate` (score a run or checkpoint).

Each function declares one subcommand or runs it by calling into the library; the library's
modules are imported inside the commands, so that `mmhpn --help` starts fast.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from mmhpn.cli.options import (_add_field_option, _add_profile, _HelpFormatter, _override_fields, _overrides,
                               _require_dataset_folder, _wrap)
from mmhpn.errors import MMHPNError


def _add_synth(sub: argparse._SubParsersAction) -> None:
    """`mmhpn synth`: write the synthetic benchmark (mmhpn.data.synthetic)."""
    from mmhpn.data.synthetic import SYNTHETIC_PRESETS

    p = sub.add_parser(
        "synth",
        help="write a synthetic pedestrian re-ID dataset in Market-1501 layout",
        description="Draw a synthetic pedestrian re-ID dataset into --out, in Market-1501 layout and "
        "naming (bounding_box_train/, bounding_box_test/, query/, gt_bbox/). The same preset and seed "
        "give byte-identical files. A finished dataset with the same settings is reused; a folder "
        "holding anything else is an error.",
    )
    p.add_argument("--preset", choices=sorted(SYNTHETIC_PRESETS), default="demo", help="dataset size (default: demo)")
    p.add_argument("--out", required=True, help="folder to create, e.g. data/synthetic-demo")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--workers", type=int, default=1, help="processes drawing images (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth_command)


def _synth_command(args: argparse.Namespace) -> int:
    from mmhpn.data.market import load_market_layout
    from mmhpn.data.synthetic import ensure_synthetic, is_complete

    existed = is_complete(args.out)
    start = time.perf_counter()
    root = ensure_synthetic(args.out, preset=args.preset, seed=args.seed, workers=args.workers,
                            progress=not args.quiet)
    verb = "found finished" if existed else f"wrote in {time.perf_counter() - start:.1f} s"
    print(f"{verb}: {root}")
    print(load_market_layout(root, name=f"synthetic-{args.preset}").summary())
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    """`mmhpn train`: train, resume or return a finished run (mmhpn.config, mmhpn.training, mmhpn.runs)."""
    p = sub.add_parser(
        "train",
        help="train a model (or resume it, or return the finished run)",
        description=_wrap(
            "Train an MMHPN-family model with a profile's settings and any field overridden. If the run "
            "folder holds a finished run of the same configuration it is returned without training; an "
            "unfinished one resumes from its last checkpoint (at most one epoch is lost). Writes "
            "config.json, checkpoint.pt (every epoch), history.csv, model.pt and metrics.json (rank-1, "
            "rank-5, rank-10 and mAP as fractions, and the protocol) into the run folder. Under "
            "`torchrun --nproc_per_node=N -m mmhpn train ...` it trains with DistributedDataParallel "
            "(gloo on CPU, nccl on CUDA); --batch-size is then the global batch. Options left out keep "
            "the profile's value."
        ),
        epilog=(
            "examples:\n"
            "  mmhpn train --profile smoke --data-root data/synthetic-tiny --run-dir runs/smoke\n"
            "  mmhpn train --profile demo --loss psl --preset mmhpn\n"
            "  mmhpn train --profile paper --dataset market1501 --data-root data/Market-1501-v15.09.15\n"
            "  torchrun --nproc_per_node=2 -m mmhpn train --profile paper --dataset market1501 --data-root DIR\n"
            "profile values: see mmhpn.config.PROFILES (python -c 'import mmhpn.config as c; "
            "print(c.make_config(\"demo\"))')"
        ),
        formatter_class=_HelpFormatter,
    )
    from mmhpn.config import RUN, SECTIONS

    groups = {section: p.add_argument_group(section) for section in SECTIONS}
    _add_profile(groups[RUN], default="paper")
    groups[RUN].add_argument("--run-dir", default=None,
                             help="run folder (default: RUNS_DIR/<name>-<first 12 digits of the config hash>)")
    groups[RUN].add_argument("--runs-dir", default="runs", help="parent of the default run folders")
    groups[RUN].add_argument("--no-progress", action="store_true", help="no progress bars")
    for field in _override_fields():
        _add_field_option(groups[field.metadata["section"]], field.name)
    p.set_defaults(func=_train_command)


def _train_command(args: argparse.Namespace) -> int:
    import json

    from mmhpn import distributed
    from mmhpn.config import make_config
    from mmhpn.runs import run_dir_for, train_or_load

    config = make_config(args.profile, **_overrides(args, [f.name for f in _override_fields()]))
    _require_dataset_folder(config.dataset, config.data_root)
    run_dir = args.run_dir or run_dir_for(config, args.runs_dir)
    with distributed.process_group(config.device):
        run = train_or_load(config, run_dir=run_dir, progress=not args.no_progress)
        if distributed.is_main_process():
            how = "trained" if run.trained_now else "finished earlier, loaded from the run folder"
            m = run.metrics
            print(f"run {run.path} ({how}): rank-1 {m['rank1']:.4f}, mAP {m['mAP']:.4f} "
                  f"({m['protocol']} protocol, {m['num_queries']} queries); metrics in {run.path / 'metrics.json'}")
            if "error" in m.get("multi_query", {}):  # some query had no gt_bbox image to pool
                print(f"multiple query: not scored ({m['multi_query']['error']})")
            elif "multi_query" in m:
                print("multiple query: " + json.dumps({k: m["multi_query"][k] for k in ("rank1", "mAP")}))
    return 0


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    """`mmhpn pretrain`: the synthetic stand-in for ImageNet pretraining (mmhpn.config.pretrain_overrides)."""
    p = sub.add_parser(
        "pretrain",
        help="train (or load) the trunk that fine-tuning runs start from",
        description=_wrap(
            "Train a trunk on the synthetic 'pretrain' preset (1,000 identities, none of them a test identity "
            "of the demo split), a stand-in for the paper's ImageNet pretraining, with a profile's settings and "
            "the baseline head. The run is cached like any run (RUNS_DIR/<name>-<hash12>/). Prints the "
            "init_from value that fine-tuning configurations use (TrainConfig(init_from=...)). Pretraining runs "
            "are kept in one per-user folder shared by every clone ($XDG_CACHE_HOME/mmhpn/pretraining, else "
            "~/.cache/mmhpn/pretraining; MMHPN_PRETRAINING_CACHE names another, or 'runs' for the runs folder). Options left out keep the values of "
            "the profile's own pretraining run (demo: data/synthetic-pretrain, the 'pretrain' preset; smoke: "
            "data/synthetic-tiny-pretrain, 'tiny-pretrain')."
        ),
        epilog="example:\n  mmhpn pretrain --profile demo --data-root data/synthetic-pretrain --epochs 4",
        formatter_class=_HelpFormatter,
    )
    _add_profile(p, default="demo")
    for name in _PRETRAIN_FIELDS:
        _add_field_option(p, name)
    p.add_argument("--runs-dir", default=None,
                   help="parent of the run folder (default: the per-user pretraining folder, mmhpn.runs.pretraining_dir)")
    _add_field_option(p, "device")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_pretrain_command)


# The fields `mmhpn pretrain` overrides in the profile's pretraining configuration (its init_from dict).
# Not `preset`: a pretraining run trains the baseline head, which fine-tuning does not keep.
_PRETRAIN_FIELDS = ("data_root", "synthetic_preset", "synthetic_seed", "backbone", "epochs", "lr", "lr_decay_epochs",
                    "seed")


def _pretrain_command(args: argparse.Namespace) -> int:
    import json

    from mmhpn.config import pretrain_overrides, pretraining_config
    from mmhpn.runs import pretraining_dir, train_or_load

    overrides = _overrides(args, _PRETRAIN_FIELDS)
    if "lr_decay_epochs" in overrides:  # init_from is JSON
        overrides["lr_decay_epochs"] = list(overrides["lr_decay_epochs"])
    init_from = pretrain_overrides(args.profile, **overrides)
    config = pretraining_config(init_from)
    if args.device is not None:
        config = type(config).from_dict({**config.to_dict(), "device": args.device})
    runs_dir = args.runs_dir if args.runs_dir is not None else pretraining_dir("runs")
    run = train_or_load(config, runs_dir, progress=not args.no_progress)
    how = "trained" if run.trained_now else "finished earlier, loaded from the run folder"
    print(f"pretraining run {run.path} ({how}): {run.metrics['train_seconds']:.0f} s of training, "
          f"rank-1 {run.metrics['rank1']:.4f}, mAP {run.metrics['mAP']:.4f} on its own test split")
    print("init_from=" + json.dumps(init_from, sort_keys=True))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    """`mmhpn evaluate`: score a run folder or checkpoint (mmhpn.evaluation)."""
    p = sub.add_parser(
        "evaluate",
        help="score a run or checkpoint on a dataset",
        description=_wrap(
            "Score a trained model with the re-ID protocol (CMC rank-1/5/10 and mAP as fractions; "
            "Market-1501's multiple-query setting too when the dataset has gt_bbox/). The model comes from "
            "a run folder (--run-dir, its model.pt) or a model/checkpoint file (--checkpoint). The dataset is "
            "the one the model was trained on unless --dataset/--data-root say otherwise (cross-dataset "
            "evaluation). Prints the scores and, with --output, writes them as JSON; it never changes the "
            "run's own metrics.json."
        ),
        formatter_class=_HelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="a finished run folder (uses its model.pt)")
    source.add_argument("--checkpoint", help="a model.pt or checkpoint.pt written by `mmhpn train`")
    _add_field_option(p, "dataset", help="dataset name (default: the one the model was trained on)")
    _add_field_option(p, "data_root", help="dataset folder (default: the training run's data root)")
    p.add_argument("--flip", action="store_true", help="average the features of each image and its mirror image")
    p.add_argument("--rerank", action="store_true",
                   help="k-reciprocal re-ranking (Zhong et al. 2017); the paper reports none")
    _add_field_option(p, "eval_protocol", flag="--protocol", default="toolbox")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    _add_field_option(p, "precision", default="fp32", help="autocast precision of feature extraction")
    _add_field_option(p, "num_workers", default=0)
    _add_field_option(p, "device", default="auto")
    p.add_argument("--output", default=None, help="also write the scores to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate_command)


def _evaluate_command(args: argparse.Namespace) -> int:
    import json

    from mmhpn.checkpoints import MODEL_FILE, load_model_file
    from mmhpn.data import load_dataset
    from mmhpn.errors import CheckpointError
    from mmhpn.evaluation.model import evaluate_model
    from mmhpn.runtime import resolve_device, resolve_precision

    if args.run_dir is not None:
        path = Path(args.run_dir) / MODEL_FILE
        if not path.is_file():
            raise CheckpointError(f"{args.run_dir} holds no {MODEL_FILE}: not a finished run folder")
    else:
        path = Path(args.checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} does not exist")
    if args.batch_size < 1:
        raise MMHPNError(f"--batch-size must be a positive integer, got {args.batch_size}")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model, config = load_model_file(path, device=device)
    dataset_name = args.dataset or config.dataset
    root = args.data_root or config.data_root
    _require_dataset_folder(dataset_name, root)
    options = {}
    if dataset_name == "synthetic":  # never generate data here: score what is there
        options = {"preset": config.synthetic_preset, "seed": config.synthetic_seed, "generate": False}
    dataset = load_dataset(dataset_name, root, **options)
    metrics = evaluate_model(model, dataset, height=config.height, width=config.width, batch_size=args.batch_size,
                             device=device, num_workers=args.num_workers, precision=precision, flip=args.flip,
                             protocol=args.eval_protocol, rerank=args.rerank, progress=not args.no_progress)
    metrics.update(model_file=str(path), precision=precision)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0
