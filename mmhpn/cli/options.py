"""The option machinery every `mmhpn` subcommand shares: the help formatter, TrainConfig's
fields as options (`_add_field_option`: each field `x_y` is `--x-y` with its help, choices and a
parser for its type), what the command line overrides (`_overrides`), and the dataset-folder check
run before anything trains or is written.

The names keep their leading underscore: they belong to the `mmhpn.cli` package, not to the
library's API.
"""
from __future__ import annotations

import argparse


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps description/epilog line breaks; shows defaults except None/False ("the profile's", "off")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def _wrap(text: str) -> str:
    import textwrap

    return textwrap.fill(text, width=88)


# Options from TrainConfig's fields: each field `x_y` is the option `--x-y`, with the
# field's help and choices (mmhpn.config); its type says how the text is parsed (below).
# None means "not given: the profile's value"; `_NONE` is the text for an explicit None.
_NONE = "none"


def _override_fields() -> list:
    """TrainConfig's fields that an option overrides: all but `profile` (the base settings)."""
    import dataclasses

    from mmhpn.config import TrainConfig

    return [f for f in dataclasses.fields(TrainConfig) if f.name != "profile"]


def _field(name: str):
    import dataclasses

    from mmhpn.config import TrainConfig

    return next(f for f in dataclasses.fields(TrainConfig) if f.name == name)


def _add_profile(parser, default: str) -> None:
    from mmhpn.config import PROFILES

    parser.add_argument("--profile", default=default, choices=sorted(PROFILES), help=_field("profile").metadata["help"])


def _add_field_option(parser, name: str, flag: str | None = None, default=None, help: str | None = None) -> None:
    """`--name` (or `flag`) for TrainConfig's field `name`: its help (unless `help` is given),
    its choices, and a parser for its type; `dest` is the field's name."""
    field = _field(name)
    kwargs = {"dest": name, "default": default, "help": help or field.metadata["help"]}
    base = field.type.removesuffix(" | None")
    if base == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif base in _PARSERS:
        parse = _PARSERS[base]
        kwargs["type"] = _none_or(parse) if base != field.type else parse
    else:
        raise TypeError(f"mmhpn.cli.options has no parser for TrainConfig.{name}'s type {field.type!r}; add one to _PARSERS")
    if field.metadata["choices"] is not None:
        kwargs["choices"] = list(field.metadata["choices"])
    parser.add_argument(flag or "--" + name.replace("_", "-"), **kwargs)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _json_object(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def _none_or(parse):
    """`parse`, and the text 'none' for an explicit None (e.g. --pretrained none, --init-from none)."""
    def parse_or_none(text: str):
        return _NONE if text.strip().lower() == _NONE else parse(text)

    parse_or_none.__name__ = parse.__name__  # argparse names the type in its error messages
    return parse_or_none


# TrainConfig's field types (as written in mmhpn/config.py, "| None" removed) -> text parser
_PARSERS = {
    "str": str,
    "int": int,
    "float": float,
    "tuple[int, ...]": _int_list,
    "tuple[float, ...]": _float_list,
    "dict[str, tuple[int, ...]]": _json_object,
    "dict[str, Any]": _json_object,
}


def _overrides(args: argparse.Namespace, names) -> dict:
    """The fields given on the command line (`_NONE` -> None); the others keep the profile's value."""
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {name: None if value == _NONE else value for name, value in values.items()}


def _require_dataset_folder(dataset: str, root: str) -> None:
    """A real dataset's folder must exist before anything trains or is written (synthetic data is generated)."""
    import os

    from mmhpn.errors import DatasetError

    if dataset != "synthetic" and not os.path.isdir(root):
        raise DatasetError(f"dataset folder {root} does not exist; expected the extracted {dataset} dataset there "
                           f"(see data/README.md), or pass --data-root DIR")
