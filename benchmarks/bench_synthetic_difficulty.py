"""Is the synthetic benchmark non-trivial? Scores of colour-histogram descriptors on it.

Two hand-made descriptors, no learning, scored with the standard protocol
(`mmhpn.evaluation.evaluate_features`, cosine distance, "toolbox" protocol: same-id
same-camera gallery images removed, distractors kept):

* global: one joint RGB histogram (8x8x8 bins) of the whole image, square-rooted
  (Hellinger), i.e. "global colour appearance";
* stripes: the same histogram in each of 6 horizontal stripes, concatenated - a crude
  part-based descriptor;
* centre / centre-stripes: the same two, computed only inside the central box where the
  person stands (columns 28%-72%, rows 6%-94%), i.e. with most of the background removed
  by hand - a stand-in for a descriptor that has learnt where the person is.

It also reports how many of the centre descriptor's rank-1 errors retrieve a look-alike of the
query (an identity of its look-alike group: same person but for one local part).
A far-from-perfect global score, and a higher stripe score, is the intended situation:
global colour alone cannot separate everyone, local parts help.

Usage: ``python benchmarks/bench_synthetic_difficulty.py [--preset demo] [--seed 0]``.
Prints the scores and writes ``benchmarks/results/synthetic-difficulty.json``.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from _results import write_result  # benchmarks/ is on sys.path when a script runs


CENTRE_BOX = (0.06, 0.94, 0.28, 0.72)  # top, bottom, left, right as fractions of the image


def colour_histograms(paths, stripes: int = 1, bits: int = 3, box=None) -> np.ndarray:
    """Joint RGB histograms with 2**bits levels per channel, per horizontal stripe, Hellinger-mapped.

    box: (top, bottom, left, right) fractions of the image to keep, or None for all of it.
    """
    bins = 1 << (3 * bits)
    shift = 8 - bits
    out = np.zeros((len(paths), stripes * bins), dtype=np.float32)
    for row, path in enumerate(paths):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB")) >> shift
        if box is not None:
            h, w = pixels.shape[:2]
            pixels = pixels[round(box[0] * h):round(box[1] * h), round(box[2] * w):round(box[3] * w)]
        index = (pixels[..., 0].astype(np.int64) << (2 * bits)) | (pixels[..., 1] << bits) | pixels[..., 2]
        stripe_of_row = (np.arange(index.shape[0]) * stripes) // index.shape[0]
        index = index + (stripe_of_row[:, None] * bins)
        hist = np.bincount(index.ravel(), minlength=stripes * bins).astype(np.float32)
        hist = hist.reshape(stripes, bins)
        hist /= hist.sum(axis=1, keepdims=True)
        out[row] = np.sqrt(hist).ravel()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="dataset folder (default: data/bench-synthetic-<preset>)")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = args.root or f"data/bench-synthetic-{args.preset}"

    from mmhpn.data import load_dataset
    from mmhpn.data.synthetic import make_plan, synthetic_config
    from mmhpn.evaluation import evaluate_features

    dataset = load_dataset("synthetic", root, preset=args.preset, seed=args.seed)
    q_pids = np.array([r.pid for r in dataset.query])
    g_pids = np.array([r.pid for r in dataset.gallery])
    q_cams = np.array([r.camid for r in dataset.query])
    g_cams = np.array([r.camid for r in dataset.gallery])

    results, features = {}, {}
    descriptors = {"global": (1, None), "stripes": (6, None), "centre": (1, CENTRE_BOX),
                   "centre-stripes": (6, CENTRE_BOX)}
    for name, (stripes, box) in descriptors.items():
        qf = colour_histograms([r.path for r in dataset.query], stripes, box=box)
        gf = colour_histograms([r.path for r in dataset.gallery], stripes, box=box)
        features[name] = (qf, gf)
        scores = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, metric="cosine")
        results[name] = {"rank1": round(float(scores.cmc[0]), 4), "rank5": round(float(scores.cmc[4]), 4),
                         "mAP": round(float(scores.mAP), 4), "num_queries": scores.num_queries}

    # Rank-1 errors of the centre descriptor that retrieve a look-alike of the query.
    plan = make_plan(synthetic_config(args.preset), args.seed)
    group_of = {pid: ident.group for pid, ident in plan.identities.items() if isinstance(pid, int)}
    qf, gf = features["centre"]
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    similarity = qn @ gn.T
    similarity[(q_pids[:, None] == g_pids[None, :]) & (q_cams[:, None] == g_cams[None, :])] = -np.inf
    top1 = g_pids[similarity.argmax(axis=1)]
    wrong = top1 != q_pids
    lookalike = wrong & np.array([group_of.get(q, -1) >= 0 and group_of.get(q) == group_of.get(t, -2)
                                  for q, t in zip(q_pids, top1)])
    in_groups = np.array([group_of.get(q, -1) >= 0 for q in q_pids])
    results["centre"]["rank1_errors"] = int(wrong.sum())
    results["centre"]["rank1_errors_on_a_lookalike"] = int(lookalike.sum())
    results["centre"]["rank1_of_queries_in_lookalike_groups"] = round(float((~wrong[in_groups]).mean()), 4)
    results["centre"]["rank1_of_other_queries"] = round(float((~wrong[~in_groups]).mean()), 4)

    summary = {"preset": args.preset, "seed": args.seed, "root": root,
               "statistics": dataset.statistics().to_dict(orient="index"), "scores": results}
    write_result("synthetic-difficulty.json", summary)
    print(dataset.summary())
    for name, r in results.items():
        print(f"{name:14s} colour histogram: rank-1 {r['rank1']:.3f}  rank-5 {r['rank5']:.3f}  mAP {r['mAP']:.3f}  "
              f"({r['num_queries']} queries)")
    g = results["centre"]
    print(f"centre rank-1 errors: {g['rank1_errors']}, of which {g['rank1_errors_on_a_lookalike']} retrieve a "
          f"look-alike; rank-1 {g['rank1_of_queries_in_lookalike_groups']:.3f} for queries in look-alike groups vs "
          f"{g['rank1_of_other_queries']:.3f} for the others")


if __name__ == "__main__":
    main()
