"""Fine-tuning regimes: the full training step against a frozen and a frozen + cached one, in one run.

Modes, measured interleaved (A B C, A B C, ...) so that a busy machine slows all alike, as
images/s over --steps steps after warm-up steps, each the step `mmhpn.training.train`
takes under that regime:

* ``full``   - the default: a batch from the image loader, forward through the whole trunk
  and the heads, the loss, backward through everything, SGD step;
* ``frozen`` - ``freeze_below_layer4``: the same batches, stem..layer3 without gradients
  and BatchNorm in eval mode, backward and SGD through layer4 and the heads only;
* ``cached`` - ``freeze_below_layer4`` + ``feature_cache``: batches of stored layer3 maps
  (`mmhpn.data.CachedFeatureLoader`), forward/backward through layer4 and the heads.

Each for ResNet-34 and the narrow-layer4 variants (``resnet34-l4w256``, and
``resnet34-l4w128``, the demo profile's), whose speed against the ResNet-34's in the same
mode is what narrowing buys (``vs_resnet34`` in the results).

Reports the ratios ``frozen / full`` and ``cached / full``, the one-off cost of building
the cache (seconds per training image, both the image and its mirror image), and the
projected seconds of one epoch over the profile's training split for each regime.

Writes ``benchmarks/results/regime-<device>.json``. Usage::

    python benchmarks/bench_regime.py                      # CPU, demo profile, mmhpn and baseline
"""
from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time

import torch

from mmhpn.config import PROFILES, build_model_for, make_config
from mmhpn.data import CachedFeatureLoader, load_data, set_loader_epoch
from mmhpn.losses import build_loss
from mmhpn.runtime import autocast, cpu_supports_bf16, resolve_precision
from mmhpn.training import frozen_modules, train_loader
from mmhpn.trunk_cache import compute_layer3_maps

from _results import write_result  # benchmarks/ is on sys.path when a script runs


def batches(loader, seed):
    epoch = 0
    while True:
        set_loader_epoch(loader, seed, epoch)
        for inputs, pids, _ in loader:
            yield inputs, pids
        epoch += 1


def make_step(model, forward, criterion, config, device, precision, frozen: bool):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    def step(inputs, pids):
        model.train()
        if frozen:
            for module in frozen_modules(model):
                module.eval()
        inputs = inputs.to(device).contiguous(memory_format=memory_format)
        with autocast(device, precision):
            loss = criterion(forward(inputs), pids.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(run_one, steps: int, warmup: int, batch_size: int) -> float:
    for _ in range(warmup):
        run_one()
    start = time.perf_counter()
    for _ in range(steps):
        run_one()
    return steps * batch_size / (time.perf_counter() - start)


def measure(config, dataset, device, precision, steps, warmup, repeats, cache_images: int) -> dict:
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    def new_model(frozen: bool):
        model = build_model_for(config, dataset.num_train_pids, pretrained=False)
        if frozen:
            for module in frozen_modules(model):
                module.requires_grad_(False)
        return model.to(device, memory_format=memory_format)

    full, frozen, cached = new_model(False), new_model(True), new_model(True)
    criterion = build_loss(config.loss, config.gammas, config.single_stripe, num_scales=len(full.scales))
    # The cache of a subset of the training images (enough batches for the timing), timed.
    records = dataset.train[:cache_images]
    started = time.perf_counter()
    features, mirrored = compute_layer3_maps(cached, records, config, device, precision)
    cache_seconds_per_image = (time.perf_counter() - started) / len(records)
    feature_loader = CachedFeatureLoader(features, mirrored, records, config.batch_size, config.sampler,
                                         config.num_instances, config.seed)
    image_stream = batches(train_loader(config, dataset.train, device), config.seed)
    frozen_stream = batches(train_loader(config, dataset.train, device), config.seed)
    feature_stream = batches(feature_loader, config.seed)
    steps_of = {
        "full": (make_step(full, full, criterion, config, device, precision, False), image_stream),
        "frozen": (make_step(frozen, frozen, criterion, config, device, precision, True), frozen_stream),
        "cached": (make_step(cached, cached.forward_from_layer3, criterion, config, device, precision, True),
                   feature_stream),
    }
    rates = {name: [] for name in steps_of}
    for _ in range(repeats):
        for name, (step, stream) in steps_of.items():
            rates[name].append(timed(lambda: step(*next(stream)), steps, warmup, config.batch_size))
    result = {f"{name}_images_per_s": statistics.median(values) for name, values in rates.items()}
    result["runs_images_per_s"] = rates
    result["frozen_vs_full"] = result["frozen_images_per_s"] / result["full_images_per_s"]
    result["cached_vs_full"] = result["cached_images_per_s"] / result["full_images_per_s"]
    best = {name: max(values) for name, values in rates.items()}
    result["frozen_vs_full_best"] = best["frozen"] / best["full"]
    result["cached_vs_full_best"] = best["cached"] / best["full"]
    result["cache_seconds_per_training_image"] = cache_seconds_per_image
    epoch_images = len(dataset.train) // config.batch_size * config.batch_size
    result["projected_epoch_seconds"] = {name: epoch_images / result[f"{name}_images_per_s"] for name in steps_of}
    result["projected_cache_seconds"] = cache_seconds_per_image * len(dataset.train)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="training profile")
    parser.add_argument("--data-root", default=None, help="synthetic data folder (generated if missing)")
    parser.add_argument("--presets", default="mmhpn,baseline", help="comma-separated model presets")
    parser.add_argument("--backbones", default="resnet34,resnet34-l4w256,resnet34-l4w128",
                        help="comma-separated backbones (default: ResNet-34 and the narrow-layer4 variants; "
                             "the demo profile's is resnet34-l4w128)")
    parser.add_argument("--precision", default="auto", help="auto, bf16 or fp32 (auto: bf16 where native)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per mode and repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each timing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (the median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    # Each mode sets up its own model (random weights: speed does not depend on them).
    overrides = {"device": args.device, "pretrained": None, "init_from": None, "freeze_below_layer4": False,
                 "feature_cache": False}
    if args.data_root:
        overrides["data_root"] = args.data_root
    base = make_config(args.profile, **overrides)
    precision = resolve_precision(args.precision, device)
    dataset = load_data(base)
    cache_images = base.batch_size * (args.warmup + args.steps) * 2
    results = {}
    for backbone, preset in itertools.product(args.backbones.split(","), args.presets.split(",")):
        config = make_config(args.profile, preset=preset, **{**overrides, "backbone": backbone})
        torch.manual_seed(0)
        r = measure(config, dataset, device, precision, args.steps, args.warmup, args.repeats, cache_images)
        results[f"{backbone}/{preset}"] = r
        epoch = r["projected_epoch_seconds"]
        print(f"[{backbone} {preset}, {precision}] full {r['full_images_per_s']:.1f} img/s, frozen {r['frozen_images_per_s']:.1f}, "
              f"cached {r['cached_images_per_s']:.1f}; frozen/full {r['frozen_vs_full']:.2f}, cached/full "
              f"{r['cached_vs_full']:.2f} (medians of {args.repeats}; best repeats {r['frozen_vs_full_best']:.2f}, "
              f"{r['cached_vs_full_best']:.2f}); epoch of {len(dataset.train)} images: full {epoch['full']:.1f} s, "
              f"frozen {epoch['frozen']:.1f} s, cached {epoch['cached']:.1f} s + a one-off cache of "
              f"{r['projected_cache_seconds']:.1f} s", flush=True)
    for key, r in results.items():  # the same regime on the demo's ResNet-34, as a ratio
        reference = results.get(f"resnet34/{key.split('/')[1]}")
        if reference is not None:
            r["vs_resnet34"] = {mode: r[f"{mode}_images_per_s"] / reference[f"{mode}_images_per_s"]
                                for mode in ("full", "frozen", "cached")}
    payload = {
        "benchmark": "regime",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": args.threads,
        "cpu_bf16_native": cpu_supports_bf16(),
        "precision": precision,
        "config": base.to_dict(),
        "train_images": len(dataset.train),
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "results": results,
    }
    out = write_result(f"regime-{device.type}.json", payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
