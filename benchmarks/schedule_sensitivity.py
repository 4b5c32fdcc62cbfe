"""Schedule sensitivity (issue #19): every claim's verdict under the regime selection's 6- and
10-epoch candidates, beside the default schedule's (`mmhpn.paper.sensitivity`).

Trains or loads every row a claim needs under each schedule through the run cache
(``--runs-dir``, default the book's ``runs``) with the book profile's seeds, checks the book's
claims, and writes one line per schedule, claim and metric to
``benchmarks/reference/schedule-sensitivity.csv`` for the demo profile (the verdicts page reads
it) or ``benchmarks/results/schedule-sensitivity-<profile>.csv`` for another; the lines already
recorded there for a schedule not run now are kept (``--schedules 10:7`` adds 10:7). Usage
(``make sensitivity [PROFILE=smoke]``)::

    python benchmarks/schedule_sensitivity.py --profile demo
    python benchmarks/schedule_sensitivity.py --profile smoke --schedules 2:1 --keys table4
"""
from __future__ import annotations

import argparse
import sys

from mmhpn.bookbuild.profiles import get_profile
from mmhpn.errors import MMHPNError
from mmhpn.paper import sensitivity


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo", help="training profile: demo (the reference) or smoke (seconds)")
    parser.add_argument("--schedules", default=",".join(sensitivity.SCHEDULES),
                        help="comma-separated epochs:decay schedules (default: %(default)s)")
    parser.add_argument("--keys", default=",".join(sensitivity.CLAIM_KEYS),
                        help="comma-separated notebooks whose claims are checked (default: all of them)")
    parser.add_argument("--runs-dir", default="runs", help="the run cache (default: the book's)")
    parser.add_argument("--out", default="", help="the CSV to write (default: the profile's, see above)")
    args = parser.parse_args(argv)
    try:
        book = get_profile(args.profile)
        frame = sensitivity.run_sensitivity(args.profile, list(book.parameters["seeds"]), _items(args.schedules), _items(args.keys),
                                            runs_dir=args.runs_dir, dataset=book.dataset,
                                            device=book.parameters.get("device", "cpu"))
        out = args.out or sensitivity.STUDY.path(args.profile)
        recorded = sensitivity.STUDY.read(out)
        merged = sensitivity.merge_recorded(recorded, frame)
        path = sensitivity.STUDY.write(merged, out)
    except MMHPNError as err:
        print(f"schedule_sensitivity: {err}", file=sys.stderr)
        return 1
    kept = sorted(set(merged["schedule"].astype(str)) - set(frame["schedule"].astype(str)))
    print(f"wrote {path}: {len(frame)} claim lines measured now ({sensitivity.STUDY.measured(frame)})"
          + (f"; kept the recorded lines of {', '.join(kept)}" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
