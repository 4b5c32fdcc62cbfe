"""The `mmhpn` command line: argument parsing and one-line errors.

Each subcommand is declared by one function and calls into the library; the logic lives in the
library modules, not here. One module per job: `options` (the option machinery the subcommands
share, TrainConfig's fields as options), `training_commands` (synth, train, pretrain, evaluate),
`tool_commands` (extract, rank, export) and `book_command` (book). Errors a user can cause
(`mmhpn.errors.MMHPNError`, missing files) print as one line and exit with status 2; Ctrl-C
prints one line (where an interrupted training resumes) and exits with status 130.
"""
from __future__ import annotations

import argparse
import sys

from mmhpn.cli.book_command import _add_book
from mmhpn.cli.tool_commands import _add_export, _add_extract, _add_rank
from mmhpn.cli.training_commands import _add_evaluate, _add_pretrain, _add_synth, _add_train
from mmhpn.errors import MMHPNError, TrainingInterrupted


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse's parser, but a wrong option is one line, not the whole usage (train's is 30 lines) first."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(
        prog="mmhpn",
        description="MMHPN person re-identification: synthetic data, training, evaluation and the book.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_train(sub)
    _add_pretrain(sub)
    _add_evaluate(sub)
    _add_extract(sub)
    _add_rank(sub)
    _add_export(sub)
    _add_book(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MMHPNError, FileNotFoundError) as err:
        print(f"mmhpn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C: one line saying where the same command picks up
        line = err.resume_line() if isinstance(err, TrainingInterrupted) else "interrupted"
        print(f"mmhpn {args.command}: {line}", file=sys.stderr)
        return 130
