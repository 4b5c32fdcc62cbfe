"""The `mmhpn` command line: argument parsing and one-line errors.

Each subcommand is declared by one function below and calls into the library; the
logic lives in the library modules, not here. Errors a user can cause
(`mmhpn.errors.MMHPNError`, missing files) print as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys

from mmhpn.errors import MMHPNError


def _add_synth(sub: argparse._SubParsersAction) -> None:
    """`mmhpn synth`: owned by the data module (issue 3)."""
    p = sub.add_parser("synth", help="write a synthetic pedestrian re-ID dataset in Market-1501 layout")
    p.set_defaults(func=_not_yet("synth"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    """`mmhpn train`: owned by the training module (issue 5)."""
    p = sub.add_parser("train", help="train a model (or resume it, or return the finished run)")
    p.set_defaults(func=_not_yet("train"))


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    """`mmhpn evaluate`: owned by the training module (issue 5)."""
    p = sub.add_parser("evaluate", help="score a run or checkpoint on a dataset")
    p.set_defaults(func=_not_yet("evaluate"))


def _not_yet(name: str):
    def run(args: argparse.Namespace) -> int:
        raise MMHPNError(f"'mmhpn {name}' is not implemented yet")

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmhpn",
        description="MMHPN person re-identification: synthetic data, training and evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_train(sub)
    _add_evaluate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MMHPNError, FileNotFoundError) as err:
        print(f"mmhpn {args.command}: error: {err}", file=sys.stderr)
        return 2
