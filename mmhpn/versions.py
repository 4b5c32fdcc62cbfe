"""Versions that a cached run depends on beyond its `TrainConfig`: what the code computes.

A run folder is reused when its configuration hash matches (`mmhpn.runs`). Fields alone
cannot see a change of the model, a loss's formula or the training loop, so the hash also
covers

* `TRAINING_SEMANTICS_VERSION` - bumped by hand whenever a change alters what a training
  computes (weights, history or final metrics) for an unchanged configuration;
* for synthetic datasets, the generator's format version (`synthetic_format_version`).

Bumping either changes every affected run's hash, hence its folder name, so old runs are
never reused; `mmhpn.run_integrity` also refuses an explicitly named folder whose recorded
version differs. Results recorded outside the run cache go stale with them, and say so: the
studies and the pretraining-seed record name their runs by hash (`mmhpn.paper.studies`), the
recorded selections in ``mmhpn/resources/`` carry the version they were measured under
(`mmhpn.paper.views.record_currency`), and tests fail on any committed one that is stale, so a
bump asks for them to be measured again.

Nobody remembers to bump a version, so a test does it for them: `SEMANTICS_SOURCES` lists
the files whose change can alter a training, and ``mmhpn/resources/training-semantics.json``
records their sha256 together with the version they were recorded at.
``tests/test_versions.py`` fails as soon as one of them differs from the record, asking to
bump the version (if the change alters what a training computes) and refresh the record::

    python -m mmhpn.versions --update              # after bumping TRAINING_SEMANTICS_VERSION
    python -m mmhpn.versions --update --same-semantics   # comments, docs, pure refactors

The digest is over each file's bytes (line endings normalised to LF, so a Windows checkout
agrees), so *any* edit, even a comment, asks for a refresh; ``--same-semantics`` is the
explicit way to say "this edit does not change results" without invalidating every cached
run. `--update` refuses to record changed sources under an unchanged version otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

TRAINING_SEMANTICS_VERSION = 3  # 2: the layout read from the text, PSL factor logging, the split engine;
# 3: feature-cache runs evaluate from cached layer3 maps, shared across runs (trunk_cache)

# Paths relative to the folder that holds the `mmhpn` package. What each one decides:
# - model.py: the network (backbone taps, stripes, pooling, classifiers);
# - losses.py: softmax and PSL, i.e. the gradients;
# - training.py: the loop and lr schedule; config.py: the profiles and the hashing rules;
#   runtime.py: precision, seeding, determinism; evaluation/model.py: the final
#   evaluation a run caches in metrics.json;
# - data/market.py: which images and labels a dataset yields (junk/distractor handling,
#   identity relabelling);
# - data/pipeline.py: transforms, samplers and the training loader, i.e. the batches;
# - evaluation/protocol.py, evaluation/features.py: how metrics.json's scores are computed
#   (a finished run caches them);
# - trunk_cache.py: the frozen trunk's layer3 maps that feature-cache runs train and
#   evaluate on.
# Not listed: the data/synthetic/ package (its own format version is hashed for synthetic
# runs, and tests/test_data_synthetic.py pins the bytes it draws, asking for a bump),
# data/checks.py (it refuses a dataset, it never changes one), evaluation/reranking.py
# (never used by a training's metrics), distributed.py (process plumbing; one-process
# results do not depend on it), checkpoints.py, atomic.py, runs.py, run_integrity.py and the
# book (files, cache and presentation, not computation).
SEMANTICS_SOURCES: tuple[str, ...] = (
    "mmhpn/model.py",
    "mmhpn/losses.py",
    "mmhpn/training.py",
    "mmhpn/config.py",
    "mmhpn/runtime.py",
    "mmhpn/evaluation/model.py",
    "mmhpn/data/market.py",
    "mmhpn/data/pipeline.py",
    "mmhpn/evaluation/protocol.py",
    "mmhpn/evaluation/features.py",
    "mmhpn/trunk_cache.py",
)

SOURCE_ROOT = Path(__file__).resolve().parent.parent
RECORD_PATH = Path(__file__).resolve().parent / "resources" / "training-semantics.json"
UPDATE_COMMAND = "python -m mmhpn.versions --update"


def synthetic_format_version() -> int:
    """The synthetic generator's format version (a change of the drawing redraws the data)."""
    from mmhpn.data.synthetic import SYNTHETIC_FORMAT_VERSION  # here: config.py hashes it, data imports config

    return SYNTHETIC_FORMAT_VERSION


def file_digest(path: Path) -> str:
    """sha256 of a source file's bytes with CRLF/CR normalised to LF."""
    data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


def current_sources(root: Path = SOURCE_ROOT, sources: tuple[str, ...] = SEMANTICS_SOURCES) -> dict[str, str]:
    """{path: sha256} of the semantics sources as they are now; a listed file that is missing raises."""
    missing = [name for name in sources if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"mmhpn.versions.SEMANTICS_SOURCES lists missing file(s) {missing}; "
                                "list the modules that now hold that code")
    return {name: file_digest(root / name) for name in sources}


def read_record(path: Path = RECORD_PATH) -> dict:
    """The recorded {"version": int, "sources": {path: sha256}} ({} if never recorded)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def record_problem(root: Path = SOURCE_ROOT, record_path: Path = RECORD_PATH) -> str | None:
    """None when the record matches the sources and the version; else one line saying what to do."""
    record = read_record(record_path)
    now = current_sources(root)
    recorded = record.get("sources", {})
    changed = sorted(name for name in set(now) | set(recorded) if now.get(name) != recorded.get(name))
    if changed:
        return (f"training-semantics sources changed since the record ({', '.join(changed)}): if what a "
                f"training computes changed, bump TRAINING_SEMANTICS_VERSION in mmhpn/versions.py "
                f"(now {TRAINING_SEMANTICS_VERSION}), then run `{UPDATE_COMMAND}` "
                f"(or `{UPDATE_COMMAND} --same-semantics` for comments and pure refactors)")
    if record.get("version") != TRAINING_SEMANTICS_VERSION:
        return (f"TRAINING_SEMANTICS_VERSION is {TRAINING_SEMANTICS_VERSION} but the record in {record_path.name} "
                f"was taken at version {record.get('version')}; run `{UPDATE_COMMAND}`")
    return None


def update_record(same_semantics: bool = False, root: Path = SOURCE_ROOT, record_path: Path = RECORD_PATH) -> str:
    """Record the current sources under the current version; return one line saying what was done.

    Refuses (ValueError) to record changed sources under the version they were last recorded
    at unless `same_semantics` says the change does not alter what a training computes.
    """
    record = read_record(record_path)
    now = current_sources(root)
    changed = sorted(name for name in set(now) | set(record.get("sources", {}))
                     if now.get(name) != record.get("sources", {}).get(name))
    if record and changed and record.get("version") == TRAINING_SEMANTICS_VERSION and not same_semantics:
        raise ValueError(f"{', '.join(changed)} changed but TRAINING_SEMANTICS_VERSION is still "
                         f"{TRAINING_SEMANTICS_VERSION}: bump it in mmhpn/versions.py, or pass --same-semantics "
                         "if the change does not alter what a training computes")
    payload = {"version": TRAINING_SEMANTICS_VERSION, "sources": now}
    tmp = record_path.with_name(f".{record_path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(record_path)
    return (f"recorded {len(now)} training-semantics sources at version {TRAINING_SEMANTICS_VERSION} "
            f"in {record_path} ({len(changed)} changed)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmhpn.versions",
                                     description="Check or refresh the training-semantics source record.")
    parser.add_argument("--update", action="store_true", help="record the current sources and version")
    parser.add_argument("--same-semantics", action="store_true",
                        help="with --update: the change does not alter what a training computes (no bump)")
    args = parser.parse_args(argv)
    try:
        if args.update:
            print(update_record(same_semantics=args.same_semantics))
            return 0
        problem = record_problem()
    except (ValueError, FileNotFoundError) as err:
        print(f"mmhpn.versions: error: {err}", file=sys.stderr)
        return 1
    print(problem or f"training-semantics record up to date (version {TRAINING_SEMANTICS_VERSION})")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
