"""The proxy study (issue #20): the paper's two largest effects under the default regime and with
each departure from the paper's protocol undone, one at a time (`mmhpn.paper.proxy`).

Trains or loads every (variant, seed, row) through the run cache (``--runs-dir``, default the
book's ``runs``: the default variant's runs are the book's Table 4 and 5 runs) and writes one
line per run (results.csv's columns plus the variant, wall minutes, profile, machine and time)
to ``benchmarks/reference/proxy-study.csv`` for the demo profile, which the book's "Paper or
proxy?" page reads, or to ``benchmarks/results/proxy-study-<profile>.csv`` for another
(``--out`` chooses). Usage (``make proxy-study [PROFILE=smoke] [SEEDS=0,1,2]``)::

    python benchmarks/proxy_study.py --profile demo
    python benchmarks/proxy_study.py --profile smoke --variants "whole network" --seeds 0,1
"""
from __future__ import annotations

import argparse
import sys

from mmhpn.bookbuild.profiles import get_profile
from mmhpn.errors import ConfigError, MMHPNError
from mmhpn.paper import proxy


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo", help="training profile: demo (the reference) or smoke (seconds)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the book profile's)")
    parser.add_argument("--variants", default="", help="comma-separated variant names (default: all); the default "
                        f"variant always runs. Variants: {', '.join(v.name for v in proxy.VARIANTS)}")
    parser.add_argument("--runs-dir", default="runs", help="the run cache (default: the book's)")
    parser.add_argument("--out", default="", help="the CSV to write (default: proxy.study_path(profile))")
    args = parser.parse_args(argv)
    try:
        book = get_profile(args.profile).parameters  # the book's seeds, device and eval_every: its very runs
        seeds = _seeds(args.seeds) if args.seeds else list(book["seeds"])
        variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
        fields = {name: book[name] for name in ("device", "eval_every") if name in book}
        study = proxy.run_study(args.profile, seeds, variants, runs_dir=args.runs_dir, **fields)
        path = proxy.write_study(study, args.out or proxy.study_path(args.profile))
    except MMHPNError as err:
        print(f"proxy_study: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}: {len(study)} runs; {proxy.study_status(study, path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
