"""Which loader setting is fastest? Images/s of the training input pipeline, three ways.

In one run, on the synthetic benchmark (generated once into --root if missing):
`mmhpn.data.build_train_loader` at the training input size (default 384x128, the paper's),
batches of --batch-size, iterated for --batches batches after one warm-up batch, with JPEG
decoding in the main process, with the decoded uint8 cache (`cache_images=True`), and with
--workers loader worker processes.

Whether the loader keeps up with training is measured by `bench_train_step.py`, which times
the pipeline and the full training step in the same run. Usage:
``python benchmarks/bench_input_pipeline.py [--height 128 --width 64] [--threads 2]``. Prints
a summary and writes ``benchmarks/results/input-pipeline-cpu.json``.
"""
from __future__ import annotations

import argparse
import time

import torch

from _results import write_result  # benchmarks/ is on sys.path when a script runs


def pipeline_rate(records, height, width, batch_size, batches, workers=0, cache=False) -> float:
    from mmhpn.data import build_train_loader

    loader = build_train_loader(records, height=height, width=width, batch_size=batch_size,
                                num_workers=workers, cache_images=cache, seed=0)
    iterator = iter(loader)
    next(iterator)  # warm-up: worker start, first decode
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            images, _, _ = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            images, _, _ = next(iterator)
        count += len(images)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/bench-synthetic-demo", help="synthetic dataset folder")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mmhpn.data import load_dataset

    dataset = load_dataset("synthetic", args.root, preset=args.preset, seed=0)
    size = (args.height, args.width)
    rates = {
        "decode_main_process": pipeline_rate(dataset.train, *size, args.batch_size, args.batches),
        "uint8_cache_main_process": pipeline_rate(dataset.train, *size, args.batch_size, args.batches, cache=True),
    }
    if args.workers > 0:
        rates[f"decode_{args.workers}_workers"] = pipeline_rate(dataset.train, *size, args.batch_size, args.batches,
                                                                workers=args.workers)
    result = {
        "input_size": list(size),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "pipeline_images_per_s": {k: round(v, 1) for k, v in rates.items()},
    }
    lines = [f"input pipeline at {args.height}x{args.width}, batch {args.batch_size}, {args.threads} threads:"]
    lines += [f"  {name}: {rate:.0f} images/s" for name, rate in rates.items()]
    write_result("input-pipeline-cpu.json", result)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
