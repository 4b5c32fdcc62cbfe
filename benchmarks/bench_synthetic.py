"""Speed of the synthetic benchmark generator: images per second on one core.

Generates a preset (default: demo) into a temporary folder with one process
(`mmhpn.data.synthetic.generate(..., workers=1)`), timing the whole job: planning, drawing,
camera effects, JPEG encoding and writing. "One core" is measured as images per CPU second of
the process (`time.process_time`: user + system time, file writes included), which does not
depend on how many other programs share the machine; the wall-clock rate is printed next to
it. In the same run it times drawing alone (no JPEG, no disk) on a sample, so the share of
each part is visible. The target is >= 300 images/s.

Usage: ``python benchmarks/bench_synthetic.py [--preset demo] [--repeats 3]``. Prints a
summary and writes ``benchmarks/results/synthetic.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _results import write_result  # benchmarks/ is on sys.path when a script runs

TARGET_IMAGES_PER_S = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the temporary datasets (default: system temp)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from mmhpn.data import synthetic

    generate_rates, wall_rates, num_images = [], [], 0
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            start, start_cpu = time.perf_counter(), time.process_time()
            out = synthetic.generate(Path(tmp) / "syn", args.preset, seed=args.seed, workers=1)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            num_images = sum(1 for _ in out.rglob("*.jpg"))
            generate_rates.append(num_images / cpu_seconds)
            wall_rates.append(num_images / seconds)

    # Drawing alone (identities, camera effects, no encoding or disk) on a sample of the jobs.
    plan = synthetic.make_plan(synthetic.synthetic_config(args.preset), args.seed)
    sample = range(0, len(plan.jobs), max(1, len(plan.jobs) // 1000))
    start = time.process_time()
    for index in sample:
        synthetic.render_job(plan, index)
    draw_rate = len(sample) / (time.process_time() - start)

    rate = statistics.median(generate_rates)
    result = {
        "preset": args.preset,
        "images": num_images,
        "generate_images_per_s_median": round(rate, 1),
        "generate_images_per_s_all": [round(r, 1) for r in generate_rates],
        "generate_images_per_wall_s_all": [round(r, 1) for r in wall_rates],
        "draw_only_images_per_s": round(draw_rate, 1),
        "target_images_per_s": TARGET_IMAGES_PER_S,
        "meets_target": rate >= TARGET_IMAGES_PER_S,
        "processes": 1,
    }
    write_result("synthetic.json", result)
    print(f"synthetic {args.preset}: {num_images} images, {rate:.0f} images per CPU second end to end on one "
          f"process (runs: {', '.join(f'{r:.0f}' for r in generate_rates)}; wall clock: "
          f"{', '.join(f'{r:.0f}' for r in wall_rates)} images/s); drawing alone {draw_rate:.0f} images/s; "
          f"target {TARGET_IMAGES_PER_S:.0f} images/s: {'met' if result['meets_target'] else 'NOT met'}")


if __name__ == "__main__":
    main()
