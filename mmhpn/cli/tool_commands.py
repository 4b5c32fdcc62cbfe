"""The student tools: `mmhpn extract` (a run's descriptors of image files, as .npz), `rank`
(Figure 4 for one query image and a gallery folder) and `export` (the test-time network as ONNX).

Each function declares one subcommand or runs it by calling into the library; the library's
modules are imported inside the commands, so that `mmhpn --help` starts fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmhpn.cli.options import _HelpFormatter, _wrap
from mmhpn.errors import ConfigError


def _add_image_options(p: argparse.ArgumentParser) -> None:
    """The options of the commands that compute a run's descriptors of image files (extract, rank)."""
    p.add_argument("--run-dir", required=True, help="a finished run folder (its model.pt and config.json)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="run", choices=["run", "auto", "bf16", "fp16", "fp32"],
                   help="autocast precision of the descriptors; 'run': the run's own (its precision setting on "
                        "this device), as its metrics were computed")
    p.add_argument("--on-error", default="stop", choices=["stop", "skip"],
                   help="an unreadable image: stop with one line, or skip it (one line each; extract lists them "
                        "in the .npz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _open_run(args: argparse.Namespace):
    """(run, model, options, describe) of --run-dir: describe(paths, on_error) gives the run's
    test-time descriptors of image files with `options` (its evaluation's, at --precision:
    mmhpn.evaluation.images.run_descriptor_options) and prints one line on stderr per image left out."""
    from mmhpn.evaluation import extract_images
    from mmhpn.evaluation.images import run_descriptor_options
    from mmhpn.runs import load_run
    from mmhpn.runtime import resolve_device, resolve_precision

    device = resolve_device(args.device)
    run = load_run(args.run_dir)
    precision = resolve_precision(run.config.precision if args.precision == "run" else args.precision, device)
    options = run_descriptor_options(run.config, precision)
    model = run.load_model(device)

    def describe(paths: list[str], on_error: str):
        result = extract_images(model, paths, **options, batch_size=args.batch_size, device=device,
                                on_error=on_error, progress=not args.no_progress)
        for _, why in result.skipped:
            print(f"mmhpn {args.command}: skipped: {why}", file=sys.stderr)
        return result

    return run, model, options, describe


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
    run, _, options, describe = _open_run(args)
    result = describe(paths, args.on_error)
    run_hash = config_hash(run.config)
    save_descriptors(out, result, names, run_hash=run_hash, flip=options["flip"], precision=options["precision"])
    print(f"mmhpn extract: wrote {out}: {len(result.positions)} descriptors of {result.features.shape[1]} dimensions "
          f"(run {run_hash[:12]}, flip-averaged: {'yes' if options['flip'] else 'no'}, {options['precision']}), "
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
    run, model, _, describe = _open_run(args)
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
