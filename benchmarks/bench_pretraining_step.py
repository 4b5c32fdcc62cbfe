"""The pretraining step's speed: smaller inputs, and torch.compile, against the demo's step, in one run.

Issue #19's first build spends about two thirds of its time pretraining three trunks. This
measures the two untried savings on the demo profile's pretraining step (`mmhpn.config`: the
whole ResNet-34-l4w128 trained, the baseline head, batch 32, SGD, bf16 autocast where the CPU
supports it, channels_last): the step at each ``--inputs`` size, eager and (``--compile``)
under ``torch.compile`` (default inductor backend, model only), on one pre-loaded batch per
size (the input pipeline is not included: `bench_input_pipeline.py`). The modes are measured
interleaved, so that a busy machine slows all alike; images/s is the median over
``--repeats`` and every ratio is against the eager step at the first input. The first step's
seconds are reported too: for a compiled step, the one-off compile, from an empty inductor
cache (a temporary ``TORCHINDUCTOR_CACHE_DIR`` unless one is set). Writes
``benchmarks/results/pretraining-step-cpu.json``. Usage::

    python benchmarks/bench_pretraining_step.py --inputs 128x64,96x48,64x32 --compile
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

# Compile from an empty inductor cache, as a first build would: a temporary folder unless one
# is set, named before torch is imported (torch reads it then).
_INDUCTOR_CACHE = None if "TORCHINDUCTOR_CACHE_DIR" in os.environ else tempfile.TemporaryDirectory()
if _INDUCTOR_CACHE is not None:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE.name

import torch  # noqa: E402 (after the cache folder is named)

from mmhpn.config import build_model_for, make_config, pretraining_config
from mmhpn.losses import build_loss
from mmhpn.paper.selection import parse_input
from mmhpn.runtime import resolve_precision

from _results import write_result  # benchmarks/ is on sys.path when a script runs
from bench_train_step import make_step, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--inputs", default="128x64,96x48,64x32", help="HxW, comma-separated; the first is the ratios' base")
    parser.add_argument("--compile", action="store_true", help="also measure each size under torch.compile")
    parser.add_argument("--classes", type=int, default=800, help="identities the classifier has (the demo's 1,000 less a fifth)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = pretraining_config(make_config(args.profile).init_from)
    device = torch.device("cpu")
    precision = resolve_precision(config.precision, device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    criterion = build_loss(config.loss, config.gammas, config.single_stripe, num_scales=1)
    generator = torch.Generator().manual_seed(0)
    modes, compile_seconds = {}, {}
    for size in args.inputs.split(","):
        height, width = parse_input(size)
        images = torch.randn(config.batch_size, 3, height, width, generator=generator)
        pids = torch.randint(0, args.classes, (config.batch_size,), generator=generator)
        for compiled in (False, True) if args.compile else (False,):
            torch.manual_seed(config.seed)
            model = build_model_for(config, args.classes).to(device, memory_format=memory_format)
            step = make_step(torch.compile(model) if compiled else model, criterion, config, device, precision)
            name = f"{size}{' compiled' if compiled else ''}"
            start = time.perf_counter()
            step(images, pids)  # the first step compiles
            compile_seconds[name] = time.perf_counter() - start
            modes[name] = (lambda step=step, images=images, pids=pids: step(images, pids))
            print(f"{name}: first step {compile_seconds[name]:.1f} s", flush=True)
    rates = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, run_one in modes.items():
            rates[name].append(timed(run_one, args.steps, args.warmup, config.batch_size, device))
    median = {name: statistics.median(values) for name, values in rates.items()}
    base = next(iter(median))
    ratios = {name: value / median[base] for name, value in median.items()}
    for name in modes:
        print(f"{name}: {median[name]:.1f} images/s, {ratios[name]:.2f}x the eager {base} step "
              f"(repeats {', '.join(f'{v:.0f}' for v in rates[name])})", flush=True)
    path = write_result("pretraining-step-cpu.json", {
        "profile": args.profile, "precision": precision, "batch_size": config.batch_size, "backbone": config.backbone,
        "images_per_s": median, "runs_images_per_s": rates, "speed_ratio": ratios,
        "first_step_seconds": compile_seconds})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
