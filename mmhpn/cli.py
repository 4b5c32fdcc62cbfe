"""The `mmhpn` command line: argument parsing and one-line errors.

Each subcommand is declared by one function below and calls into the library; the
logic lives in the library modules, not here. Errors a user can cause
(`mmhpn.errors.MMHPNError`, missing files) print as one line and exit with status 2; Ctrl-C
prints one line (where an interrupted training resumes) and exits with status 130.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmhpn.errors import MMHPNError, TrainingInterrupted


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


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps description/epilog line breaks; shows defaults except None/False ("the profile's", "off")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def _wrap(text: str) -> str:
    import textwrap

    return textwrap.fill(text, width=88)


# Options from TrainConfig's fields: each field `x_y` is the option `--x-y`, with the
# field's help and choices (mmhpn.config); its type says how the text is parsed (below).
# None means "not given: the profile's value"; `_NONE` is the text for an explicit None.
_NONE = "none"


def _override_fields() -> list:
    """TrainConfig's fields that an option overrides: all but `profile` (the base settings)."""
    import dataclasses

    from mmhpn.config import TrainConfig

    return [f for f in dataclasses.fields(TrainConfig) if f.name != "profile"]


def _field(name: str):
    import dataclasses

    from mmhpn.config import TrainConfig

    return next(f for f in dataclasses.fields(TrainConfig) if f.name == name)


def _add_profile(parser, default: str) -> None:
    from mmhpn.config import PROFILES

    parser.add_argument("--profile", default=default, choices=sorted(PROFILES), help=_field("profile").metadata["help"])


def _add_field_option(parser, name: str, flag: str | None = None, default=None, help: str | None = None) -> None:
    """`--name` (or `flag`) for TrainConfig's field `name`: its help (unless `help` is given),
    its choices, and a parser for its type; `dest` is the field's name."""
    field = _field(name)
    kwargs = {"dest": name, "default": default, "help": help or field.metadata["help"]}
    base = field.type.removesuffix(" | None")
    if base == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif base in _PARSERS:
        parse = _PARSERS[base]
        kwargs["type"] = _none_or(parse) if base != field.type else parse
    else:
        raise TypeError(f"mmhpn.cli has no parser for TrainConfig.{name}'s type {field.type!r}; add one to _PARSERS")
    if field.metadata["choices"] is not None:
        kwargs["choices"] = list(field.metadata["choices"])
    parser.add_argument(flag or "--" + name.replace("_", "-"), **kwargs)


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


def _json_object(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def _none_or(parse):
    """`parse`, and the text 'none' for an explicit None (e.g. --pretrained none, --init-from none)."""
    def parse_or_none(text: str):
        return _NONE if text.strip().lower() == _NONE else parse(text)

    parse_or_none.__name__ = parse.__name__  # argparse names the type in its error messages
    return parse_or_none


# TrainConfig's field types (as written in mmhpn/config.py, "| None" removed) -> text parser
_PARSERS = {
    "str": str,
    "int": int,
    "float": float,
    "tuple[int, ...]": _int_list,
    "tuple[float, ...]": _float_list,
    "dict[str, tuple[int, ...]]": _json_object,
    "dict[str, Any]": _json_object,
}


def _overrides(args: argparse.Namespace, names) -> dict:
    """The fields given on the command line (`_NONE` -> None); the others keep the profile's value."""
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {name: None if value == _NONE else value for name, value in values.items()}


def _require_dataset_folder(dataset: str, root: str) -> None:
    """A real dataset's folder must exist before anything trains or is written (synthetic data is generated)."""
    import os

    from mmhpn.errors import DatasetError

    if dataset != "synthetic" and not os.path.isdir(root):
        raise DatasetError(f"dataset folder {root} does not exist; expected the extracted {dataset} dataset there "
                           f"(see data/README.md), or pass --data-root DIR")


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
    """`mmhpn book`: execute the notebooks and build the book (mmhpn.bookbuild); `make book` calls it."""
    from mmhpn.bookbuild.layout import REPO_ROOT
    from mmhpn.bookbuild.profiles import PROFILES

    p = sub.add_parser(
        "book",
        help="execute every notebook with papermill and build the HTML book offline",
        description=_wrap(
            "Execute the notebooks of notebooks/ in order with a book profile's parameters (trainings "
            "come from the run cache when finished), write book/executed/results.csv and claims.csv, "
            "and build the HTML into _build/html/ with Jupyter Book, loading nothing from the web. "
            "One console line per notebook; the full logs are in book/executed/logs/. With --only, "
            "only the named notebooks are executed (the other executed pages stay as they are); with "
            "--param as well, with your own values, and their pages are marked as executed with "
            "non-default parameters until they are executed again without --param. With --archive or "
            "--pdf, only pack the built site into one .tar.gz that opens from disk, or print the "
            "executed book into one PDF (headless Chromium, offline)."
        ),
        epilog=("examples:\n"
                "  mmhpn book                       # the demo profile (make book)\n"
                "  mmhpn book --profile smoke       # minutes, tiny settings\n"
                "  mmhpn book --profile paper --dataset market1501 --data-root /path/to/Market-1501\n"
                "  mmhpn book --only 06-table-7-psl --param 'gammas=[0.5, 1.0, 1.0, 2.0]'\n"
                "  mmhpn book --only 06-table-7-psl  # the default page again\n"
                "  mmhpn book --archive _build/mmhpn-book.tar.gz\n"
                "  mmhpn book --pdf _build/mmhpn-book.pdf   # make book-pdf"),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="book profile")
    p.add_argument("--dataset", default=None, help="dataset name (default: the profile's)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the profile's)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--seeds", default=None, type=_int_list, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--only", default=None, metavar="NOTEBOOK[,NOTEBOOK...]",
                   help="execute only these notebooks of _toc.yml (default: all, in the toc's order); "
                        "the other executed pages stay as they are")
    p.add_argument("--param", action="append", default=None, metavar="KEY=VALUE",
                   help="with --only: execute with this notebook parameter, VALUE in YAML, e.g. "
                        "--param 'gammas=[0.5, 1.0, 1.0, 2.0]' (repeat for more); the page is marked")
    p.add_argument("--no-build", action="store_true", help="execute notebooks only")
    p.add_argument("--archive", default=None, type=Path, metavar="PATH",
                   help="only pack the already built _build/html/ into PATH (.tar.gz) for reading from disk")
    p.add_argument("--pdf", default=None, type=Path, metavar="PATH",
                   help="only print the executed book into PATH (.pdf), offline (make book-pdf)")
    p.add_argument("--root", default=str(REPO_ROOT), type=Path,
                   help="folder holding _config.yml, _toc.yml, book/ and notebooks/ (default: this repository)")
    p.set_defaults(func=_book_command)


def _book_command(args: argparse.Namespace) -> int:
    import logging

    from mmhpn.bookbuild.archive import ARCHIVE_FOLDER, write_archive
    from mmhpn.bookbuild.layout import HTML
    from mmhpn.bookbuild.non_default import parse_params
    from mmhpn.bookbuild.pipeline import run_pipeline
    from mmhpn.bookbuild.profiles import get_profile

    root = args.root.resolve()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.archive is not None:
        out = write_archive(args.archive, root=root)
        print(f"mmhpn book: wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); extract it and open "
              f"{ARCHIVE_FOLDER}/index.html in a browser")
        return 0
    if args.pdf is not None:
        from mmhpn.bookbuild.pdf import write_pdf

        out, pages, chapters = write_pdf(args.pdf, root=root)
        print(f"mmhpn book: wrote {out} ({pages} pages, {chapters} chapters, "
              f"{out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    parameters = parse_params(args.param or [])
    profile = get_profile(args.profile, args.dataset, args.data_root, args.device, args.seeds)
    notebooks = tuple(args.only.split(",")) if args.only else None
    record = run_pipeline(profile, notebooks, build=not args.no_build, root=root, parameters=parameters)
    print(f"mmhpn book: profile {profile.name} done in {record['total_s']:.0f} s "
          f"(notebooks {sum(record['notebooks_s'].values()):.0f} s); HTML in {root / HTML}")
    return 0


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse's parser, but a wrong option is one line, not the whole usage (train's is 30 lines) first."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(
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
    except KeyboardInterrupt as err:  # Ctrl-C: one line saying where the same command picks up
        line = err.resume_line() if isinstance(err, TrainingInterrupted) else "interrupted"
        print(f"mmhpn {args.command}: {line}", file=sys.stderr)
        return 130
