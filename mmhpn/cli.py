"""The `mmhpn` command line: argument parsing and one-line errors.

Each subcommand is declared by one function below and calls into the library; the
logic lives in the library modules, not here. Errors a user can cause
(`mmhpn.errors.MMHPNError`, missing files) print as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmhpn.errors import ConfigError, MMHPNError


def _add_synth(sub: argparse._SubParsersAction) -> None:
    """`mmhpn synth`: write the synthetic benchmark (mmhpn.data.synthetic)."""
    from mmhpn.data.synthetic import PRESETS

    p = sub.add_parser(
        "synth",
        help="write a synthetic pedestrian re-ID dataset in Market-1501 layout",
        description="Draw a synthetic pedestrian re-ID dataset into --out, in Market-1501 layout and "
        "naming (bounding_box_train/, bounding_box_test/, query/, gt_bbox/). The same preset and seed "
        "give byte-identical files. A finished dataset with the same settings is reused; a folder "
        "holding anything else is an error.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="dataset size (default: demo)")
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
    where = p.add_argument_group("profile and run folder")
    where.add_argument("--profile", default="paper", choices=_profiles(),
                       help="base settings: paper = Sec. 4.2 (ImageNet ResNet-50, 384x128, 60 epochs, the PSL with "
                            "the paper's gammas; precision is ours: bf16 autocast where supported, see "
                            "--precision), demo = the book's CPU settings on synthetic data, smoke = seconds, "
                            "for tests")
    where.add_argument("--run-dir", default=None,
                       help="run folder (default: RUNS_DIR/<name>-<first 12 digits of the config hash>)")
    where.add_argument("--runs-dir", default="runs", help="parent of the default run folders")
    where.add_argument("--name", default=None, help="run name, the prefix of the default run folder")
    where.add_argument("--no-progress", action="store_true", help="no progress bars")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", default=None,
                      help="market1501, dukemtmc-reid, cuhk03-np or synthetic (default: the profile's)")
    data.add_argument("--data-root", default=None,
                      help="dataset folder (Market-1501 layout); for synthetic data it is generated there if missing")
    data.add_argument("--synthetic-preset", default=None, help="synthetic preset: tiny, demo or market-sized")
    data.add_argument("--synthetic-seed", type=int, default=None, help="seed of the synthetic data")

    model = p.add_argument_group("model")
    model.add_argument("--preset", default=None, help="baseline, msm, mhpm or mmhpn (the paper's Table 4 rows)")
    model.add_argument("--layout", type=_json_layout, default=None,
                       help='override the preset\'s stripes as JSON {tap: [stripe counts]}, e.g. \'{"conv5_3": [12]}\'')
    model.add_argument("--backbone", default=None, help="resnet34, resnet50 or resnet101")
    model.add_argument("--pooling", default=None, help="aps (Eq. 1), avg (GAP) or max (GMP)")
    model.add_argument("--pretrained", default=None,
                       help="'imagenet' (torchvision's file in the local torch hub cache, never downloaded), "
                            "a path to a ResNet state_dict, or 'none' for random init")

    loss = p.add_argument_group("loss")
    loss.add_argument("--loss", default=None, choices=["softmax", "psl", "weighted_softmax"],
                      help="softmax = Eq. 3; psl = the Part Sensitive Loss, Eq. 5 (the paper profile's); "
                           "weighted_softmax = Eq. 3 with one constant per scale (--scale-weights; ours, a "
                           "control for the PSL)")
    loss.add_argument("--gammas", type=_float_list, default=None,
                      help="PSL gammas, one per scale in the model's order, comma-separated, e.g. 0.3,0.5,1.5,2")
    loss.add_argument("--single-stripe", default=None, choices=["ce", "literal", "focal"],
                      help="PSL rule for one-stripe scales (see mmhpn.losses)")
    loss.add_argument("--scale-weights", type=_float_list, default=None,
                      help="weighted_softmax: one constant per scale in the model's order, comma-separated")

    inputs = p.add_argument_group("input and schedule")
    inputs.add_argument("--height", type=int, default=None, help="input height in pixels")
    inputs.add_argument("--width", type=int, default=None, help="input width in pixels")
    inputs.add_argument("--batch-size", type=int, default=None, help="batch size (global, over all processes)")
    inputs.add_argument("--sampler", default=None, choices=["shuffle", "pk"],
                        help="shuffle = plain shuffling (paper); pk = identity-balanced P x K batches")
    inputs.add_argument("--num-instances", type=int, default=None, help="K, images per identity for --sampler pk")
    inputs.add_argument("--epochs", type=int, default=None, help="number of epochs")
    inputs.add_argument("--lr", type=float, default=None, help="initial learning rate (SGD)")
    inputs.add_argument("--lr-decay-epochs", type=_int_list, default=None,
                        help="comma-separated epochs after which the lr is multiplied by --lr-decay-factor")
    inputs.add_argument("--lr-decay-factor", type=float, default=None, help="lr step factor")
    inputs.add_argument("--momentum", type=float, default=None, help="SGD momentum")
    inputs.add_argument("--weight-decay", type=float, default=None, help="SGD weight decay")

    regime = p.add_argument_group("fine-tuning regime (the demo and smoke profiles set these)")
    regime.add_argument("--init-from", type=_init_from, default=None,
                        help="fine-tune from a pretraining run: the JSON that `mmhpn pretrain` prints after "
                             "init_from=, or 'none' to train from --pretrained's weights")
    regime.add_argument("--freeze-below-layer4", action=argparse.BooleanOptionalAction, default=None,
                        help="freeze stem..layer3 (no gradients, BatchNorm in eval mode): train layer4 and the heads")
    regime.add_argument("--feature-cache", action=argparse.BooleanOptionalAction, default=None,
                        help="with the freeze: compute layer3's maps once per image (shared by every run "
                             "fine-tuned from the same pretraining run) and train on them")
    regime.add_argument("--val-fraction", type=float, default=None,
                        help="hold out this fraction of the training identities as a validation query/gallery "
                             "and score on it (the test split is not read)")

    machine = p.add_argument_group("reproducibility, speed and evaluation")
    machine.add_argument("--seed", type=int, default=None, help="random seed")
    machine.add_argument("--precision", default=None, choices=["auto", "bf16", "fp16", "fp32"],
                         help="auto = bf16 autocast where the CPU/GPU supports it, fp16 on older GPUs, else fp32 "
                              "(ours: the paper states no precision; fp32 is the closest match)")
    machine.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                         help="deterministic kernels (slower; resumed runs then match uninterrupted ones on CPU)")
    machine.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                         help="channels_last memory format (faster convolutions on CPU and GPU)")
    machine.add_argument("--eval-every", type=int, default=None, help="also evaluate every N epochs (0 = only at the end)")
    machine.add_argument("--eval-flip", action=argparse.BooleanOptionalAction, default=None,
                         help="average the features of each test image and its mirror image")
    machine.add_argument("--eval-protocol", default=None, choices=["toolbox", "market1501-official"],
                         help="toolbox = AP as in the PyTorch re-ID toolboxes; market1501-official = "
                              "the official Market-1501 code (trapezoid AP, id -1 junk)")
    machine.add_argument("--num-workers", type=int, default=None, help="data loader worker processes")
    machine.add_argument("--cache-images", action=argparse.BooleanOptionalAction, default=None,
                         help="decode the training images once into memory (faster epochs, same results)")
    machine.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=_train_command)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps description/epilog line breaks; shows defaults except None/False ("the profile's", "off")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


# TrainConfig fields that `mmhpn train` sets from options of the same name.
_TRAIN_OPTION_FIELDS = (
    "name", "dataset", "data_root", "synthetic_preset", "synthetic_seed", "preset", "layout", "backbone",
    "pooling", "pretrained", "loss", "gammas", "single_stripe", "scale_weights", "height", "width", "batch_size", "sampler",
    "num_instances", "epochs", "lr", "lr_decay_epochs", "lr_decay_factor", "momentum", "weight_decay", "seed",
    "precision", "deterministic", "channels_last", "eval_every", "eval_flip", "eval_protocol", "num_workers",
    "cache_images", "device", "init_from", "freeze_below_layer4", "feature_cache", "val_fraction",
)


def _wrap(text: str) -> str:
    import textwrap

    return textwrap.fill(text, width=88)


def _profiles() -> list[str]:
    from mmhpn.config import PROFILES

    return sorted(PROFILES)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _json_layout(text: str) -> dict:
    import json

    try:
        layout = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected JSON like '{{\"conv5_3\": [12]}}', got {text!r} ({err})") from None
    if not isinstance(layout, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{tap: [stripe counts]}}, got {text!r}")
    return layout


_NONE = "none"  # an option's explicit "no value" (None means: the profile's value)


def _init_from(text: str) -> dict | str:
    import json

    if text.strip().lower() == _NONE:
        return _NONE
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected the JSON `mmhpn pretrain` prints, like "
                                         f"'{{\"profile\": \"demo\", ...}}', or 'none'; got {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{\"profile\": ..., field: value}} or 'none', "
                                         f"got {text!r}")
    return value


def _train_command(args: argparse.Namespace) -> int:
    import json
    import os

    from mmhpn import distributed
    from mmhpn.config import make_config
    from mmhpn.runs import run_dir_for, train_or_load

    overrides = {f: getattr(args, f) for f in _TRAIN_OPTION_FIELDS if getattr(args, f) is not None}
    for field in ("pretrained", "init_from"):
        if isinstance(overrides.get(field), str) and overrides[field].lower() == _NONE:
            overrides[field] = None
    config = make_config(args.profile, **overrides)
    if config.dataset != "synthetic" and not os.path.isdir(config.data_root):
        raise FileNotFoundError(f"dataset folder {config.data_root} does not exist; pass --data-root DIR")
    run_dir = args.run_dir or run_dir_for(config, args.runs_dir)
    with distributed.process_group(config.device):
        run = train_or_load(config, run_dir=run_dir, progress=not args.no_progress)
        if distributed.is_main_process():
            how = "trained" if run.trained_now else "finished earlier, loaded from the run folder"
            m = run.metrics
            print(f"run {run.path} ({how}): rank-1 {m['rank1']:.4f}, mAP {m['mAP']:.4f} "
                  f"({m['protocol']} protocol, {m['num_queries']} queries); metrics in {run.path / 'metrics.json'}")
            if "multi_query" in m:
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
            "init_from value that fine-tuning configurations use (TrainConfig(init_from=...)); a fine-tuning "
            "run finds this run in the folder that holds its own run folder."
        ),
        epilog="example:\n  mmhpn pretrain --profile demo --data-root data/synthetic-pretrain --epochs 4",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--profile", default="demo", choices=_profiles(), help="base settings")
    p.add_argument("--data-root", default="data/synthetic-pretrain",
                   help="folder of the pretraining data (generated there if missing)")
    p.add_argument("--runs-dir", default="runs", help="parent of the run folder")
    for option, kind, text in (("--epochs", int, "number of epochs"), ("--lr", float, "initial learning rate"),
                               ("--lr-decay-epochs", _int_list, "comma-separated lr decay epochs"),
                               ("--seed", int, "random seed"), ("--synthetic-seed", int, "seed of the data"),
                               ("--synthetic-preset", str, "synthetic preset (default: pretrain)")):
        p.add_argument(option, type=kind, default=None, help=text)
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_pretrain_command)


def _pretrain_command(args: argparse.Namespace) -> int:
    import json

    from mmhpn.config import pretrain_overrides, pretraining_config
    from mmhpn.runs import train_or_load

    fields = ("data_root", "epochs", "lr", "lr_decay_epochs", "seed", "synthetic_seed", "synthetic_preset")
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    if "lr_decay_epochs" in overrides:
        overrides["lr_decay_epochs"] = list(overrides["lr_decay_epochs"])
    init_from = pretrain_overrides(args.profile, **overrides)
    config = pretraining_config(init_from)
    if args.device is not None:
        config = type(config).from_dict({**config.to_dict(), "device": args.device})
    run = train_or_load(config, args.runs_dir, progress=not args.no_progress)
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
    p.add_argument("--dataset", default=None, help="dataset name (default: the one the model was trained on)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the training run's data root)")
    p.add_argument("--flip", action="store_true", help="average the features of each image and its mirror image")
    p.add_argument("--rerank", action="store_true",
                   help="k-reciprocal re-ranking (Zhong et al. 2017); the paper reports none")
    p.add_argument("--protocol", default="toolbox", choices=["toolbox", "market1501-official"],
                   help="toolbox = AP as in the PyTorch re-ID toolboxes; market1501-official = "
                        "the official Market-1501 code (trapezoid AP, id -1 junk)")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    p.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp16", "fp32"],
                   help="autocast precision of feature extraction")
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--output", default=None, help="also write the scores to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate_command)


def _evaluate_command(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    from mmhpn.checkpoints import MODEL_FILE, load_model_file
    from mmhpn.data import load_dataset
    from mmhpn.evaluation.model import evaluate_model
    from mmhpn.runtime import resolve_device, resolve_precision

    if args.run_dir is not None:
        path = Path(args.run_dir) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{args.run_dir} holds no {MODEL_FILE}: not a finished run folder")
    else:
        path = Path(args.checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if args.batch_size < 1:
        raise MMHPNError(f"--batch-size must be a positive integer, got {args.batch_size}")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model, config = load_model_file(path, device=device)
    dataset_name = args.dataset or config.dataset
    root = args.data_root or config.data_root
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset folder {root} does not exist; pass --data-root DIR")
    options = {}
    if dataset_name == "synthetic":  # never generate data here: score what is there
        options = {"preset": config.synthetic_preset, "seed": config.synthetic_seed, "generate": False}
    dataset = load_dataset(dataset_name, root, **options)
    metrics = evaluate_model(model, dataset, height=config.height, width=config.width, batch_size=args.batch_size,
                             device=device, num_workers=args.num_workers, precision=precision, flip=args.flip,
                             protocol=args.protocol, rerank=args.rerank, progress=not args.no_progress)
    metrics.update(model_file=str(path), precision=precision)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


def _add_image_options(p: argparse.ArgumentParser) -> None:
    """The options of the commands that compute a run's descriptors of image files (extract, rank)."""
    p.add_argument("--run-dir", required=True, help="a finished run folder (its model.pt and config.json)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp16", "fp32"],
                   help="autocast precision of the descriptors")
    p.add_argument("--on-error", default="stop", choices=["stop", "skip"],
                   help="an unreadable image: stop with one line, or skip it (one line each; extract lists them "
                        "in the .npz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _open_run(args: argparse.Namespace):
    """(run, model, describe) of --run-dir: describe(paths, on_error) gives the run's test-time
    descriptors of image files, flip-averaged when its evaluation was (mmhpn.evaluation.extract_images),
    and prints one line on stderr per image left out."""
    from mmhpn.evaluation import extract_images
    from mmhpn.evaluation.images import run_descriptor_options
    from mmhpn.runs import load_run
    from mmhpn.runtime import resolve_device, resolve_precision

    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    run = load_run(args.run_dir)
    model = run.load_model(device)

    def describe(paths: list[str], on_error: str):
        result = extract_images(model, paths, **run_descriptor_options(run.config), batch_size=args.batch_size,
                                device=device, precision=precision, on_error=on_error,
                                progress=not args.no_progress)
        for _, why in result.skipped:
            print(f"mmhpn {args.command}: skipped: {why}", file=sys.stderr)
        return result

    return run, model, describe


def _tool_parser(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
                 example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=_wrap(description), epilog=f"example:\n  {example}",
                          formatter_class=_HelpFormatter)


def _check_suffix(path: str, suffix: str, option: str) -> Path:
    if Path(path).suffix.lower() != suffix:
        raise ConfigError(f"{option} must name a {suffix} file, got {path!r}")
    return Path(path)


def _add_extract(sub: argparse._SubParsersAction) -> None:
    """`mmhpn extract`: a run's descriptors of image files, saved as .npz (mmhpn.evaluation.images)."""
    p = _tool_parser(
        sub, "extract", "save a run's descriptors of your images (.npz)",
        "Compute a finished run's test-time descriptor of every image (resized to the run's input size, "
        "flip-averaged when the run's evaluation was, as its metrics were computed) and save them as one .npz "
        "(mmhpn.evaluation.images.save_descriptors): features (N x D float32), names (the images' paths relative "
        "to the folder, or the list's lines), skipped (images left out with --on-error skip), run_hash, "
        "descriptor_dim, flip, precision. np.load(FILE) reads it.",
        "mmhpn extract --run-dir runs/smoke --images data/synthetic-tiny/query --out query.npz")
    p.add_argument("--images", required=True,
                   help="a folder (its .jpg/.jpeg/.png/.bmp files, recursively, sorted) or a text file with one "
                        "image path per line")
    p.add_argument("--out", required=True, help="the .npz file to write")
    _add_image_options(p)
    p.set_defaults(func=_extract_command)


def _extract_command(args: argparse.Namespace) -> int:
    from mmhpn.config import config_hash
    from mmhpn.evaluation.images import image_paths, save_descriptors

    out = _check_suffix(args.out, ".npz", "--out")
    paths, names = image_paths(args.images)
    run, _, describe = _open_run(args)
    result = describe(paths, args.on_error)
    run_hash = config_hash(run.config)
    save_descriptors(out, result, names, run_hash=run_hash, flip=run.config.eval_flip, precision=args.precision)
    print(f"mmhpn extract: wrote {out}: {len(result.positions)} descriptors of {result.features.shape[1]} dimensions "
          f"(run {run_hash[:12]}, flip-averaged: {'yes' if run.config.eval_flip else 'no'}), "
          f"{len(result.skipped)} image(s) skipped")
    return 0


def _add_rank(sub: argparse._SubParsersAction) -> None:
    """`mmhpn rank`: Figure 4 for one query image and a gallery folder (mmhpn.figures.ranking_figure)."""
    p = _tool_parser(
        sub, "rank", "draw the nearest gallery images of a query image (Figure 4's picture)",
        "Rank a gallery folder's images by the cosine distance of a finished run's descriptors to a query "
        "image's and draw the top ones as the book's Figure 4 does, with the query's Grad-CAM heatmap for "
        "its similarity to the top match (rounding noise when that match is a copy of the query). Identities "
        "are unknown here, so frames are neutral and nothing is excluded.",
        "mmhpn rank --run-dir runs/smoke --query me.jpg --gallery photos/ --top 10 --out rank.png")
    p.add_argument("--query", required=True, help="the query image")
    p.add_argument("--gallery", required=True, help="a folder of images (recursively) or a text file of image paths")
    p.add_argument("--top", type=int, default=10, help="gallery images shown")
    p.add_argument("--out", required=True, help="the .png file to write")
    p.add_argument("--csv", default=None, help="also write the ranked names and distances to this .csv file")
    p.add_argument("--no-heatmap", action="store_true", help="leave out the query's Grad-CAM heatmap")
    _add_image_options(p)
    p.set_defaults(func=_rank_command)


def _rank_command(args: argparse.Namespace) -> int:
    import csv

    from mmhpn import figures
    from mmhpn.atomic import atomic_path
    from mmhpn.attribution import similarity_heatmaps
    from mmhpn.evaluation import pairwise_distance
    from mmhpn.evaluation.images import image_paths
    from mmhpn.evaluation.ranking import nearest_gallery

    out = _check_suffix(args.out, ".png", "--out")
    table_file = None if args.csv is None else _check_suffix(args.csv, ".csv", "--csv")
    paths, names = image_paths(args.gallery)
    run, model, describe = _open_run(args)
    query, gallery = describe([args.query], "stop"), describe(paths, args.on_error)
    table = nearest_gallery(pairwise_distance(query.features, gallery.features), args.top)
    heatmaps = None if args.no_heatmap else similarity_heatmaps(model, table, [args.query], gallery.paths,
                                                               run.config.height, run.config.width)
    figures.ranking_figure(table, [args.query], gallery.paths, heatmaps=heatmaps, path=out)
    if table_file is not None:
        table_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(table_file) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["rank", "name", "distance", "path"])
            for entry in table.itertuples():
                writer.writerow([entry.rank, names[gallery.positions[entry.gallery]], f"{entry.distance:.6f}",
                                 gallery.paths[entry.gallery]])
    first = table.iloc[0]
    print(f"mmhpn rank: wrote {out}{f' and {table_file}' if table_file else ''}: top {len(table)} of "
          f"{len(gallery.paths)} gallery images; nearest {names[gallery.positions[int(first['gallery'])]]} "
          f"at cosine distance {first['distance']:.4f}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    """`mmhpn export`: the test-time network as ONNX, checked with onnxruntime (mmhpn.export)."""
    p = _tool_parser(
        sub, "export", "export a run's test-time network to ONNX (checked with onnxruntime)",
        "Export a finished run's test-time network in fp32 to ONNX: input images N x 3 x H x W (N dynamic, "
        "H x W the run's input size, ImageNet-normalised), output the N x D descriptor (without flip "
        "averaging). The file is kept only if onnxruntime reproduces torch's output on random input; the "
        "largest difference is printed. Needs the export extra: pip install 'mmhpn[export]'.",
        "mmhpn export --run-dir runs/smoke --onnx smoke.onnx")
    p.add_argument("--run-dir", required=True, help="a finished run folder (its model.pt and config.json)")
    p.add_argument("--onnx", required=True, help="the .onnx file to write")
    p.set_defaults(func=_export_command)


def _export_command(args: argparse.Namespace) -> int:
    from mmhpn.export import export_onnx
    from mmhpn.runs import load_run

    run = load_run(args.run_dir)
    report = export_onnx(run.load_model("cpu"), args.onnx, height=run.config.height, width=run.config.width)
    print(f"mmhpn export: wrote {report.summary()}")
    return 0


def _add_book(sub: argparse._SubParsersAction) -> None:
    """`mmhpn book`: execute the notebooks and build the book (mmhpn.book); `make book` calls it."""
    from mmhpn import book

    p = sub.add_parser(
        "book",
        help="execute every notebook with papermill and build the HTML book offline",
        description=_wrap(
            "Execute the notebooks of notebooks/ in order with a book profile's parameters (trainings "
            "come from the run cache when finished), write book/executed/results.csv and claims.csv, "
            "and build the HTML into _build/html/ with Jupyter Book, loading nothing from the web. "
            "One console line per notebook; the full logs are in book/executed/logs/. With --archive, "
            "only pack an already built site into one .tar.gz that opens from disk."
        ),
        epilog=("examples:\n"
                "  mmhpn book                       # the demo profile (make book)\n"
                "  mmhpn book --profile smoke       # minutes, tiny settings\n"
                "  mmhpn book --profile paper --dataset market1501 --data-root /path/to/Market-1501\n"
                "  mmhpn book --archive _build/mmhpn-book.tar.gz"),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--profile", default="demo", choices=sorted(book.PROFILES), help="book profile")
    p.add_argument("--dataset", default=None, help="dataset name (default: the profile's)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the profile's)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--seeds", default=None, type=_int_list, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--notebooks", default=None,
                   help="comma-separated notebook names to execute (default: all, in order)")
    p.add_argument("--no-build", action="store_true", help="execute notebooks only")
    p.add_argument("--archive", default=None, type=Path, metavar="PATH",
                   help="only pack the already built _build/html/ into PATH (.tar.gz) for reading from disk")
    p.add_argument("--root", default=str(book.REPO_ROOT), type=Path,
                   help="folder holding _config.yml, _toc.yml, book/ and notebooks/ (default: this repository)")
    p.set_defaults(func=_book_command)


def _book_command(args: argparse.Namespace) -> int:
    import logging

    from mmhpn import book

    root = args.root.resolve()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.archive is not None:
        out = book.write_archive(args.archive, root=root)
        print(f"mmhpn book: wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); extract it and open "
              f"{book.ARCHIVE_FOLDER}/index.html in a browser")
        return 0
    profile = book.get_profile(args.profile, args.dataset, args.data_root, args.device, args.seeds)
    notebooks = tuple(args.notebooks.split(",")) if args.notebooks else book.NOTEBOOK_ORDER
    unknown = [n for n in notebooks if n not in book.NOTEBOOK_ORDER]
    if unknown:
        raise ConfigError(f"unknown notebook(s) {unknown}; expected names from {list(book.NOTEBOOK_ORDER)}")
    record = book.run_pipeline(profile, notebooks, build=not args.no_build, root=root)
    print(f"mmhpn book: profile {profile.name} done in {record['total_s']:.0f} s "
          f"(notebooks {sum(record['notebooks_s'].values()):.0f} s); HTML in {root / book.HTML}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmhpn",
        description="MMHPN person re-identification: synthetic data, training, evaluation and the book.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_train(sub)
    _add_pretrain(sub)
    _add_evaluate(sub)
    _add_extract(sub)
    _add_rank(sub)
    _add_export(sub)
    _add_book(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MMHPNError, FileNotFoundError) as err:
        print(f"mmhpn {args.command}: error: {err}", file=sys.stderr)
        return 2
