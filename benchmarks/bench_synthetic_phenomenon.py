"""Does the synthetic benchmark contain what the paper's claims are about? Measured without any network.

The claims of Tables 4-7 are about part-level cues: a global (orderless) descriptor cannot
tell "red top, blue trousers" from "blue top, red trousers", a horizontally striped one can;
finer stripes resolve smaller details; occlusion and vertical misalignment make fixed
stripes harder to match. This script measures each on the synthetic test split with
hand-made colour descriptors, no learning:

* descriptor: joint RGB histogram (4x4x4 bins, Hellinger-mapped) of the person's pixels
  only, in 1 (global), 2, 4 or 8 horizontal stripes, concatenated, cosine distance;
* three sources of pixels:
  - ``attributes``: the generator's own part attributes, drawn cleanly (the image's view,
    canonical size and position, no background, camera, misalignment or occlusion);
  - ``pixels``: the dataset's JPEG pixels where the person is visible (the generator's
    silhouette mask, occluders removed), stripes of the image box (as a network's stripes);
  - ``pixels-aligned``: the same pixels, stripes of the person's own vertical extent (what
    stripes would see without misalignment);
* scored (a) on the whole test split with the standard protocol
  (`mmhpn.evaluation.evaluate_features`: same-id same-camera gallery images removed,
  distractors kept), and (b) within look-alike pairs (a group's base identity and one
  variant; the queries of both against the gallery of both, by the same protocol:
  `mmhpn.evaluation.evaluate`'s per-query scores), per kind of difference:
  WHERE parts are (``swap-upper-lower``, ``swap-block``, ``detail-height``: the same
  colours) or WHAT one part is (``hair``, ``shoes``, ``lower``, ``bag``, ``upper-pattern``).
  Within a pair, a descriptor that cannot separate the two people has rank-1 near the
  share of the right person's images in the pair's gallery (about 0.5).

It also reports how often the test images are occluded and vertically shifted, and the
``pixels`` scores of occluded and unoccluded queries. The margin striped-minus-global is
reported for every row. Usage::

    python benchmarks/bench_synthetic_phenomenon.py [--preset demo] [--seed 0] [--root DIR]

Prints tables and writes ``benchmarks/results/synthetic-phenomenon.json``.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from _results import write_result  # benchmarks/ is on sys.path when a script runs

STRIPES = (1, 2, 4, 8)
# 4 levels per channel (64 joint bins): coarse enough that a camera's colour cast and
# brightness move few pixels to another bin (8 levels measured: smaller margins, same ordering).
BITS = 2
SOURCES = ("attributes", "pixels", "pixels-aligned")


def stripe_histograms(pixels: np.ndarray, mask: np.ndarray, stripes: int, top: float = 0.0,
                      bottom: float = 1.0) -> np.ndarray:
    """Hellinger-mapped joint RGB histograms of the masked pixels in `stripes` bands of rows top..bottom."""
    bins = 1 << (3 * BITS)
    h = pixels.shape[0]
    q = pixels >> (8 - BITS)
    index = (q[..., 0].astype(np.int64) << (2 * BITS)) | (q[..., 1].astype(np.int64) << BITS) | q[..., 2]
    rows = (np.arange(h) + 0.5) / h
    stripe = np.floor((rows - top) / max(bottom - top, 1e-6) * stripes).astype(np.int64)
    stripe = np.clip(stripe, 0, stripes - 1)  # rows outside the span join the end stripes
    keep = mask
    flat = (index + stripe[:, None] * bins)[keep]
    hist = np.bincount(flat, minlength=stripes * bins).astype(np.float32).reshape(stripes, bins)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
    out = np.sqrt(hist).ravel()
    return out / max(float(np.linalg.norm(out)), 1e-12)


def clean_drawing(synthetic, ident, view: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The identity's attributes drawn cleanly: canonical box, black background, no camera; and its mask."""
    images = []
    for solid in (None, (255, 255, 255)):
        image = Image.new("RGB", (width, height), (0, 0, 0))
        rng = np.random.default_rng(0)  # the same pose for everyone
        synthetic.draw_person(ImageDraw.Draw(image), ident, view, width / 2, 0.05 * height, 0.9 * height, rng,
                              solid=solid)
        images.append(np.asarray(image))
    return images[0], images[1][..., 0] > 127


def rank1_ap(distances: np.ndarray, q_pids, g_pids, q_cams, g_cams) -> tuple[np.ndarray, np.ndarray]:
    """Per query: rank-1 hit and average precision, NaN for a query without a true match.

    The standard protocol's per-query results (`mmhpn.evaluation.evaluate`: same-id
    same-camera gallery images ignored, ties in gallery order).
    """
    from mmhpn.evaluation import evaluate

    result = evaluate(distances, q_pids, g_pids, q_cams, g_cams, max_rank=1)
    scored = result.query_first_match >= 0
    return np.where(scored, (result.query_first_match == 0).astype(float), np.nan), result.query_ap


def scored_mean(values) -> float:
    """The mean over the queries that have a true match."""
    return float(np.nanmean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="dataset folder (default: data/bench-synthetic-<preset>)")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bits", type=int, default=BITS, help="histogram levels per channel: 2**bits")
    args = parser.parse_args()
    globals()["BITS"] = args.bits
    root = args.root or f"data/bench-synthetic-{args.preset}"

    from mmhpn.data import load_dataset
    from mmhpn.data import synthetic
    from mmhpn.evaluation import evaluate_features

    start = time.perf_counter()
    dataset = load_dataset("synthetic", root, preset=args.preset, seed=args.seed)
    config = synthetic.synthetic_config(args.preset)
    plan = synthetic.make_plan(config, args.seed)
    job_of = {Path(job[0]).name: index for index, job in enumerate(plan.jobs)}
    splits = {"query": dataset.query, "gallery": dataset.gallery}

    # Descriptors of every query and gallery image, from the three sources.
    features = {(source, k): {} for source in SOURCES for k in STRIPES}
    conditions = {"query": [], "gallery": []}
    for split, records in splits.items():
        rows = {key: [] for key in features}
        for record in records:
            index = job_of[Path(record.path).name]
            info: dict = {}
            synthetic.render_job(plan, index, info)  # how the image was taken, and its person mask
            with Image.open(record.path) as image:
                pixels = np.asarray(image.convert("RGB"))
            mask = info["mask"] if info["mask"].sum() >= 20 else np.ones(pixels.shape[:2], bool)
            ident = plan.identities[plan.jobs[index][2]]
            clean, clean_mask = clean_drawing(synthetic, ident, info["view"], config.height, config.width)
            for k in STRIPES:
                rows[("pixels", k)].append(stripe_histograms(pixels, mask, k))
                rows[("pixels-aligned", k)].append(
                    stripe_histograms(pixels, mask, k, info["person_top"], info["person_bottom"]))
                rows[("attributes", k)].append(stripe_histograms(clean, clean_mask, k, 0.05, 0.95))
            conditions[split].append((info["occluder"] is not None, info["shift"], record.pid > 0))
        for key, value in rows.items():
            features[key][split] = np.stack(value)

    q_pids = np.array([r.pid for r in dataset.query])
    g_pids = np.array([r.pid for r in dataset.gallery])
    q_cams = np.array([r.camid for r in dataset.query])
    g_cams = np.array([r.camid for r in dataset.gallery])
    occluded_query = np.array([c[0] for c in conditions["query"]])

    # (a) the whole test split, standard protocol.
    whole = {}
    for (source, k), f in features.items():
        scores = evaluate_features(f["query"], f["gallery"], q_pids, g_pids, q_cams, g_cams, metric="cosine")
        whole[f"{source}/{k}"] = {"rank1": round(float(scores.cmc[0]), 4), "mAP": round(float(scores.mAP), 4)}
    # Occluded vs unoccluded queries (pixels, image-box stripes).
    by_occlusion = {}
    for k in STRIPES:
        f = features[("pixels", k)]
        distances = 1 - f["query"] @ f["gallery"].T
        hits, aps = rank1_ap(distances, q_pids, g_pids, q_cams, g_cams)
        by_occlusion[str(k)] = {
            "occluded": {"rank1": round(scored_mean(hits[occluded_query]), 4),
                         "mAP": round(scored_mean(aps[occluded_query]), 4)},
            "unoccluded": {"rank1": round(scored_mean(hits[~occluded_query]), 4),
                           "mAP": round(scored_mean(aps[~occluded_query]), 4)},
        }

    # (b) within look-alike pairs (base, variant), per kind of difference.
    groups = defaultdict(list)
    for pid in plan.test_pids:
        if plan.identities[pid].group >= 0:
            groups[plan.identities[pid].group].append(pid)
    pairs = []  # (kind, base pid, variant pid)
    for members in groups.values():
        base = next(pid for pid in members if not plan.identities[pid].changed_part)
        pairs += [(plan.identities[pid].changed_part, base, pid) for pid in members if pid != base]
    kinds = list(synthetic.POSITION_PARTS) + list(synthetic.LOOKALIKE_PARTS)
    within = {}
    for (source, k), f in features.items():
        per_kind = defaultdict(lambda: ([], []))
        for kind, a, b in pairs:
            qi = np.flatnonzero(np.isin(q_pids, (a, b)))
            gi = np.flatnonzero(np.isin(g_pids, (a, b)))
            distances = 1 - f["query"][qi] @ f["gallery"][gi].T
            hits, aps = rank1_ap(distances, q_pids[qi], g_pids[gi], q_cams[qi], g_cams[gi])
            family = "where" if kind in synthetic.POSITION_PARTS else "what"
            for key in (kind, family, "all"):
                per_kind[key][0].extend(hits)
                per_kind[key][1].extend(aps)
        within[f"{source}/{k}"] = {key: {"rank1": round(scored_mean(h), 4), "mAP": round(scored_mean(a), 4),
                                         "queries": int(np.sum(~np.isnan(h)))} for key, (h, a) in per_kind.items()}
    pair_counts = {kind: sum(p[0] == kind for p in pairs) for kind in kinds}

    # Conditions of the test images: occlusion and vertical shift of the person in the box.
    # (test identities' images only: distractors include deliberate half-person detections)
    shifts = np.array([c[1] for split in conditions.values() for c in split if c[2]])
    occluded = np.array([c[0] for split in conditions.values() for c in split if c[2]])
    gallery_shift = np.array([c[1] for c in conditions["gallery"] if c[2]])
    query_shift = np.array([c[1] for c in conditions["query"]])
    condition_summary = {
        "occluded_share": round(float(occluded.mean()), 4),
        "shift_std": round(float(shifts.std()), 4),
        "shift_abs_p90": round(float(np.quantile(np.abs(shifts), 0.9)), 4),
        "share_shifted_over_half_an_8_stripe": round(float((np.abs(shifts) > 1 / 16).mean()), 4),
        "query_gallery_shift_gap_mean": round(float(np.abs(query_shift[:, None] - gallery_shift[None, :]).mean()), 4),
    }

    def margin(table: dict, source: str, key=None) -> dict:
        def value(k, metric):
            row = table[f"{source}/{k}"]
            return (row[key] if key else row)[metric]
        return {str(k): {m: round(value(k, m) - value(1, m), 4) for m in ("rank1", "mAP")} for k in STRIPES[1:]}

    # Full tables as lists of rows (the book's compute-cost page lists only the few headline
    # numbers, under "headline"); margins are striped minus global (1 stripe), same source.
    rows = [{"source": src, "stripes": k, "subset": "whole test split", **whole[f"{src}/{k}"]}
            for src in SOURCES for k in STRIPES]
    rows += [{"source": src, "stripes": k, "subset": f"pairs {key}", **value}
             for src in SOURCES for k in STRIPES for key, value in within[f"{src}/{k}"].items()]
    margins = [{"source": src, "subset": subset, "stripes": int(k), **value}
               for subset, table, key in (("whole test split", whole, None), ("pairs where", within, "where"),
                                          ("pairs what", within, "what"))
               for src in SOURCES for k, value in margin(table, src, key).items()]
    headline = {
        "pixels_whole_test_split": {"global": whole["pixels/1"], "8_stripes": whole["pixels/8"]},
        "pixels_where_pairs": {"global": {m: within["pixels/1"]["where"][m] for m in ("rank1", "mAP")},
                               "8_stripes": {m: within["pixels/8"]["where"][m] for m in ("rank1", "mAP")}},
    }
    summary = {
        "preset": args.preset, "seed": args.seed, "root": root,
        "format_version": synthetic.FORMAT_VERSION,
        "statistics": dataset.statistics().to_dict(orient="index"),
        "descriptor": f"joint RGB histogram {1 << BITS}x{1 << BITS}x{1 << BITS}, Hellinger, per stripe, cosine",
        "lookalike_pairs_in_test_split": pair_counts,
        "headline": headline,
        "scores": rows,
        "margins_striped_minus_global": margins,
        "pixels_by_query_occlusion": [{"stripes": int(k), "queries": occ, **value[occ]}
                                      for k, value in by_occlusion.items() for occ in ("occluded", "unoccluded")],
        "conditions": condition_summary,
        "seconds": round(time.perf_counter() - start, 1),
    }
    path = write_result("synthetic-phenomenon.json", summary)

    print(dataset.summary())
    print(f"look-alike pairs in the test split: {pair_counts}")
    print("\nrank-1 / mAP; columns: stripes " + ", ".join(map(str, STRIPES)))
    for source in SOURCES:
        print(f"\n[{source}]")
        line = "  whole test split       " + "  ".join(
            f"{whole[f'{source}/{k}']['rank1']:.3f}/{whole[f'{source}/{k}']['mAP']:.3f}" for k in STRIPES)
        print(line)
        for key in ["where", *synthetic.POSITION_PARTS, "what", *synthetic.LOOKALIKE_PARTS]:
            rows = [within[f"{source}/{k}"].get(key) for k in STRIPES]
            if rows[0] is None:
                continue
            print(f"  pairs {key:17s}" + "  ".join(f"{r['rank1']:.3f}/{r['mAP']:.3f}" for r in rows)
                  + f"   ({rows[0]['queries']} queries)")
    print(f"\nconditions: {condition_summary}")
    print(f"pixels, by query occlusion: {by_occlusion}")
    print(f"wrote {path} in {summary['seconds']} s")


if __name__ == "__main__":
    main()
