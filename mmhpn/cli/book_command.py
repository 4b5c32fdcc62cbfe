"""`mmhpn book`: execute the notebooks and build the book (mmhpn.bookbuild), or pack a built one
into one archive; `make book` calls it. The library's modules are imported inside the functions,
so that `mmhpn --help` starts fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mmhpn.cli.options import _HelpFormatter, _int_list, _wrap


def _add_book(sub: argparse._SubParsersAction) -> None:
    """`mmhpn book`: execute the notebooks and build the book (mmhpn.bookbuild); `make book` calls it."""
    from mmhpn.bookbuild.layout import REPO_ROOT
    from mmhpn.bookbuild.profiles import PROFILES

    p = sub.add_parser(
        "book",
        help="execute every notebook with papermill and build the HTML book offline",
        description=_wrap(
            "Execute the notebooks of notebooks/ in order with a book profile's parameters (trainings "
            "come from the run cache when finished), write book/executed/results.csv and claims.csv, "
            "and build the HTML into _build/html/ with Jupyter Book, loading nothing from the web. "
            "One console line per notebook; the full logs are in book/executed/logs/. With --archive, "
            "only pack an already built site into one .tar.gz that opens from disk."
        ),
        epilog=("examples:\n"
                "  mmhpn book                       # the demo profile (make book)\n"
                "  mmhpn book --profile smoke       # minutes, tiny settings\n"
                "  mmhpn book --profile paper --dataset market1501 --data-root /path/to/Market-1501\n"
                "  mmhpn book --archive _build/mmhpn-book.tar.gz"),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="book profile")
    p.add_argument("--dataset", default=None, help="dataset name (default: the profile's)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the profile's)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--seeds", default=None, type=_int_list, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--notebooks", default=None,
                   help="comma-separated notebook names to execute (default: all of _toc.yml, in its order)")
    p.add_argument("--no-build", action="store_true", help="execute notebooks only")
    p.add_argument("--archive", default=None, type=Path, metavar="PATH",
                   help="only pack the already built _build/html/ into PATH (.tar.gz) for reading from disk")
    p.add_argument("--root", default=str(REPO_ROOT), type=Path,
                   help="folder holding _config.yml, _toc.yml, book/ and notebooks/ (default: this repository)")
    p.set_defaults(func=_book_command)


def _book_command(args: argparse.Namespace) -> int:
    import logging

    from mmhpn.bookbuild.archive import ARCHIVE_FOLDER, write_archive
    from mmhpn.bookbuild.layout import HTML
    from mmhpn.bookbuild.pipeline import run_pipeline
    from mmhpn.bookbuild.profiles import get_profile

    root = args.root.resolve()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.archive is not None:
        out = write_archive(args.archive, root=root)
        print(f"mmhpn book: wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); extract it and open "
              f"{ARCHIVE_FOLDER}/index.html in a browser")
        return 0
    profile = get_profile(args.profile, args.dataset, args.data_root, args.device, args.seeds)
    notebooks = tuple(args.notebooks.split(",")) if args.notebooks else None
    record = run_pipeline(profile, notebooks, build=not args.no_build, root=root)
    print(f"mmhpn book: profile {profile.name} done in {record['total_s']:.0f} s "
          f"(notebooks {sum(record['notebooks_s'].values()):.0f} s); HTML in {root / HTML}")
    return 0
