"""`mmhpn book`: execute the notebooks and build the book (mmhpn.bookbuild), some of them with
the reader's own parameters (--only, --param), or pack a built one into one archive, or print
it into one PDF; `make book`, `make book-archive` and `make book-pdf` call it. The library's
modules are imported inside the functions, so that `mmhpn --help` starts fast.
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
            "One console line per notebook; the full logs are in book/executed/logs/. With --only, "
            "only the named notebooks are executed (the other executed pages stay as they are); with "
            "--param as well, with your own values, and their pages are marked as executed with "
            "non-default parameters until they are executed again without --param. With --archive or "
            "--pdf, only pack the built site into one .tar.gz that opens from disk, or print the "
            "executed book into one PDF (headless Chromium, offline)."
        ),
        epilog=("examples:\n"
                "  mmhpn book                       # the demo profile (make book)\n"
                "  mmhpn book --profile smoke       # minutes, tiny settings\n"
                "  mmhpn book --profile paper --dataset market1501 --data-root /path/to/Market-1501\n"
                "  mmhpn book --only 06-table-7-psl --param 'gammas=[0.5, 1.0, 1.0, 2.0]'\n"
                "  mmhpn book --only 06-table-7-psl  # the default page again\n"
                "  mmhpn book --archive _build/mmhpn-book.tar.gz\n"
                "  mmhpn book --pdf _build/mmhpn-book.pdf   # make book-pdf"),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--profile", default="demo", choices=sorted(PROFILES), help="book profile")
    p.add_argument("--dataset", default=None, help="dataset name (default: the profile's)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the profile's)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--seeds", default=None, type=_int_list, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--only", default=None, metavar="NOTEBOOK[,NOTEBOOK...]",
                   help="execute only these notebooks of _toc.yml (default: all, in the toc's order); "
                        "the other executed pages stay as they are")
    p.add_argument("--param", action="append", default=None, metavar="KEY=VALUE",
                   help="with --only: execute with this notebook parameter, VALUE in YAML, e.g. "
                        "--param 'gammas=[0.5, 1.0, 1.0, 2.0]' (repeat for more); the page is marked")
    p.add_argument("--no-build", action="store_true", help="execute notebooks only")
    p.add_argument("--archive", default=None, type=Path, metavar="PATH",
                   help="only pack the already built _build/html/ into PATH (.tar.gz) for reading from disk")
    p.add_argument("--pdf", default=None, type=Path, metavar="PATH",
                   help="only print the executed book into PATH (.pdf), offline (make book-pdf)")
    p.add_argument("--root", default=str(REPO_ROOT), type=Path,
                   help="folder holding _config.yml, _toc.yml, book/ and notebooks/ (default: this repository)")
    p.set_defaults(func=_book_command)


def _book_command(args: argparse.Namespace) -> int:
    import logging

    from mmhpn.bookbuild.archive import ARCHIVE_FOLDER, write_archive
    from mmhpn.bookbuild.layout import HTML
    from mmhpn.bookbuild.non_default import parse_params
    from mmhpn.bookbuild.pipeline import run_pipeline
    from mmhpn.bookbuild.profiles import get_profile

    root = args.root.resolve()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.archive is not None:
        out = write_archive(args.archive, root=root)
        print(f"mmhpn book: wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); extract it and open "
              f"{ARCHIVE_FOLDER}/index.html in a browser")
        return 0
    if args.pdf is not None:
        from mmhpn.bookbuild.pdf import write_pdf

        out, pages, chapters = write_pdf(args.pdf, root=root)
        print(f"mmhpn book: wrote {out} ({pages} pages, {chapters} chapters, "
              f"{out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    parameters = parse_params(args.param or [])
    profile = get_profile(args.profile, args.dataset, args.data_root, args.device, args.seeds)
    notebooks = tuple(args.only.split(",")) if args.only else None
    record = run_pipeline(profile, notebooks, build=not args.no_build, root=root, parameters=parameters)
    print(f"mmhpn book: profile {profile.name} done in {record['total_s']:.0f} s "
          f"(notebooks {sum(record['notebooks_s'].values()):.0f} s); HTML in {root / HTML}")
    return 0
