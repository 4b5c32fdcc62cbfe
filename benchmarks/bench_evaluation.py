"""Time `evaluate_features` on a Market-1501-sized problem against the matrix product alone.

The problem: 3,368 queries and 15,913 gallery images with 3,840-d descriptors, with the
identity structure of Market-1501's test split (750 ids over 6 cameras, about 4.5 queries
and 17.5 gallery images per id, 2,793 distractors of id 0). A descriptor is its id's
centre + a camera offset + noise of an image-specific strength; ids come in look-alike
groups so that some negatives are hard. Noise levels are set so that the scores resemble
a trained model's (rank-1 about 0.96, mAP about 0.75).

Measured in one run, medians over --repeats (the two alternate):
* ``matmul``: the fp32 query x gallery product of L2-normalised descriptors, one call;
* ``evaluate``: `mmhpn.evaluation.evaluate_features` end to end (normalisation, distances
  in chunks, CMC and mAP);
* for context, a plain per-query NumPy loop (argsort of each distance row, as the
  pure-Python evaluators do) on a subset of queries, extrapolated to all queries and added
  to the product time; its per-query scores are checked against ours.
Peak memory: resident-set high-water mark of a child process during one evaluation (the
process holds the problem's descriptors too), or `torch.cuda.max_memory_allocated` on a GPU.

Usage: ``python benchmarks/bench_evaluation.py [--device cuda] [--repeats 5]``. Prints a
summary line and writes ``benchmarks/results/evaluation-<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmhpn.evaluation import evaluate_features

from _results import write_result  # benchmarks/ is on sys.path when a script runs


def market_like_problem(seed: int = 0, dims: int = 3840, num_ids: int = 750, num_cams: int = 6,
                        num_query: int = 3368, num_gallery: int = 15913, num_distractors: int = 2793,
                        noise: float = 3.0):
    """Synthetic descriptors (float32 tensors) and labels (int64 arrays) shaped like Market-1501."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    groups = torch.randn(num_ids // 10 + 1, dims, generator=g)
    centres = 0.6 * groups[torch.arange(num_ids + 1) // 10] + 0.8 * torch.randn(num_ids + 1, dims, generator=g)
    cam_offsets = 0.5 * torch.randn(num_cams, dims, generator=g)

    # Every id is seen by 2-6 cameras; queries are one image per (id, camera) as in Market.
    id_cams = [rng.choice(num_cams, size=rng.integers(2, num_cams + 1), replace=False) for _ in range(num_ids)]
    pairs = np.array([(pid + 1, cam) for pid in range(num_ids) for cam in id_cams[pid]])
    q_rows = rng.choice(len(pairs), size=num_query, replace=len(pairs) < num_query)
    q_pids, q_cams = pairs[q_rows, 0], pairs[q_rows, 1]
    g_rows = rng.integers(0, len(pairs), num_gallery - num_distractors)
    g_pids = np.concatenate([pairs[g_rows, 0], np.zeros(num_distractors, dtype=np.int64)])
    g_cams = np.concatenate([pairs[g_rows, 1], rng.integers(0, num_cams, num_distractors)])

    def descriptors(pids, cams):
        out = torch.empty(len(pids), dims)
        for start in range(0, len(pids), 1024):  # in slices, so building stays small in memory
            p, c = torch.from_numpy(pids[start:start + 1024]), torch.from_numpy(cams[start:start + 1024])
            strength = torch.from_numpy(rng.lognormal(0.0, 0.25, len(p)).astype(np.float32))[:, None]
            base = torch.where((p > 0)[:, None], centres[p], torch.randn(len(p), dims, generator=g))
            out[start:start + len(p)] = base + cam_offsets[c] + noise * strength * torch.randn(len(p), dims, generator=g)
        return out

    return (descriptors(q_pids, q_cams), descriptors(g_pids, g_cams), q_pids.astype(np.int64),
            g_pids.astype(np.int64), q_cams.astype(np.int64), g_cams.astype(np.int64))


def naive_scores(distmat: np.ndarray, q_pids, g_pids, q_cams, g_cams):
    """Per-query AP and first-match rank, one argsort per query (the plain-Python way)."""
    aps, firsts = [], []
    for i in range(len(distmat)):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        matches = (g_pids[order] == q_pids[i])[keep]
        if not matches.any():
            aps.append(np.nan)
            firsts.append(-1)
            continue
        hits = np.flatnonzero(matches)
        aps.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
        firsts.append(hits[0])
    return np.array(aps), np.array(firsts)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(args) -> dict:
    """Run in a fresh process: build the problem, evaluate once, report resident memory.

    The kernel's high-water mark (VmHWM) is reset just before the evaluation (Linux
    ``clear_refs``), so the peak is that of the evaluation, data and interpreter included.
    """
    torch.set_num_threads(args.threads)
    qf, gf, *labels = market_like_problem(args.seed)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mib("VmRSS")
    evaluate_features(qf, gf, *labels, chunk_size=args.chunk_size)
    return {"peak_rss_mib": _status_mib("VmHWM"), "rss_before_evaluation_mib": before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--naive-queries", type=int, default=300, help="queries for the naive loop (0: skip)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    qf, gf, q_pids, g_pids, q_cams, g_cams = market_like_problem(args.seed)
    qf, gf = qf.to(device), gf.to(device)
    qn, gn = F.normalize(qf, dim=1), F.normalize(gf, dim=1)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, chunk_size=args.chunk_size)  # warm-up
    # Alternate the two, so that a change in machine load hits both alike.
    mm_times, eval_times = [], []
    for _ in range(args.repeats):
        seconds, product = timed(lambda: qn @ gn.T, device)
        mm_times.append(seconds)
        seconds, result = timed(lambda: evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams,
                                                          chunk_size=args.chunk_size), device)
        eval_times.append(seconds)
    t_mm, t_eval = statistics.median(mm_times), statistics.median(eval_times)

    record = {
        "device": str(device), "threads": args.threads,
        "num_query": len(q_pids), "num_gallery": len(g_pids), "dims": qf.shape[1],
        "repeats": args.repeats, "matmul_s": t_mm, "evaluate_s": t_eval, "ratio": t_eval / t_mm,
        "ratio_per_repeat_median": statistics.median(e / m for e, m in zip(eval_times, mm_times)),
        "matmul_times_s": mm_times, "evaluate_times_s": eval_times, "scores": result.as_dict(),
    }
    if device.type == "cuda":
        record["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        child = subprocess.run([sys.executable, __file__, "--memory-child", "--seed", str(args.seed),
                                "--threads", str(args.threads)]
                               + (["--chunk-size", str(args.chunk_size)] if args.chunk_size else []),
                               capture_output=True, text=True, check=True)
        record.update(json.loads(child.stdout.strip().splitlines()[-1]))

    if args.naive_queries:
        n = min(args.naive_queries, len(q_pids))
        distmat = (1 - product[:n]).cpu().numpy()
        start = time.perf_counter()
        aps, firsts = naive_scores(distmat, q_pids[:n], g_pids, q_cams[:n], g_cams)
        t_naive = (time.perf_counter() - start) * len(q_pids) / n
        # Same scores as ours on those queries (up to float rounding of the distances).
        same = np.allclose(aps, result.query_ap[:n], atol=1e-6, equal_nan=True)
        record.update(naive_loop_extrapolated_s=t_naive, naive_ratio=(t_mm + t_naive) / t_mm,
                      naive_queries=n, naive_agrees=bool(same))

    path = write_result(f"evaluation-{device.type}.json", record)
    memory = record.get("peak_rss_mib", record.get("peak_gpu_memory_mib"))
    naive = f", naive loop {record['naive_ratio']:.1f}x" if "naive_ratio" in record else ""
    print(f"evaluation [{device}, {args.threads} threads]: matmul {t_mm:.2f} s, evaluate_features {t_eval:.2f} s, "
          f"ratio {record['ratio']:.2f}x{naive}; peak memory {memory:.0f} MiB; "
          f"rank1 {result.rank(1):.3f} mAP {result.mAP:.3f} -> {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
