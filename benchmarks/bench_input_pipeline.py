"""Does the input pipeline keep up with training? Images/s of the loader next to the model's.

In one run, on the synthetic benchmark (generated once into --root if missing):

* input pipeline: `mmhpn.data.build_train_loader` at the training input size (default
  384x128, the paper's), batches of --batch-size, iterated for --batches batches after one
  warm-up batch, in three settings: JPEG decoding in the main process, decoded uint8 cache
  (`cache_images=True`), and --workers loader worker processes;
* model: training steps (forward, stripe softmax loss, backward, SGD step) of
  `mmhpn.build_model(preset="mmhpn")` on random images of the same size, with the smallest
  backbone the model module offers (resnet18 if it exists, else resnet34), when
  `mmhpn.build_model` is importable.

The ratio pipeline / model says how many times faster than training the loader produces
images; below 1 the loader starves the model. Usage:
``python benchmarks/bench_input_pipeline.py [--device cuda] [--threads 2]``. Prints a summary
and writes ``benchmarks/results/input-pipeline-<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


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


def model_rate(num_classes, height, width, batch_size, steps, device) -> tuple[float, str] | None:
    try:
        from mmhpn import build_model
        from mmhpn.errors import ConfigError
        from mmhpn.losses import StripeCrossEntropy
    except ImportError:
        return None
    model, backbone = None, None
    for backbone in ("resnet18", "resnet34"):
        try:
            model = build_model(num_classes, preset="mmhpn", backbone=backbone)
            break
        except (ConfigError, KeyError, ValueError):
            continue
    if model is None:
        return None
    model.to(device).train()
    loss_fn = StripeCrossEntropy()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, 3, height, width, device=device)
    targets = torch.randint(0, num_classes, (batch_size,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), targets)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start), backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/bench-synthetic-demo", help="synthetic dataset folder")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-batch-size", type=int, default=None, help="default: --batch-size")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps; 0 skips the model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

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
    model = (model_rate(dataset.num_train_pids, *size, args.model_batch_size or args.batch_size, args.steps, device)
             if args.steps > 0 else None)

    result = {
        "input_size": list(size),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": str(device),
        "pipeline_images_per_s": {k: round(v, 1) for k, v in rates.items()},
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    lines = [f"input pipeline at {args.height}x{args.width}, batch {args.batch_size}, {args.threads} threads:"]
    lines += [f"  {name}: {rate:.0f} images/s" for name, rate in rates.items()]
    if model is not None:
        rate, backbone = model
        result.update(model_backbone=backbone, model_train_images_per_s=round(rate, 1),
                      pipeline_over_model={k: round(v / rate, 2) for k, v in rates.items()})
        lines.append(f"  model training step (mmhpn, {backbone}, {device}): {rate:.1f} images/s")
        lines.append("  pipeline / model: " + ", ".join(f"{k} {v / rate:.1f}x" for k, v in rates.items()))
    else:
        lines.append("  model: training rate not measured (--steps 0, or mmhpn.build_model not importable)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"input-pipeline-{device.type}.json").write_text(json.dumps(result, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
