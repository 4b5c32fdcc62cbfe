"""Package data: the files the library reads, installed with it (pyproject's package-data).

- ``paper_tables.csv``: the numbers transcribed from the MMHPN paper (`mmhpn.paper.numbers`);
- ``regime-selection.json``: the recorded result of ``benchmarks/select_regime.py``, how the
  demo profile's schedule was chosen (`mmhpn.paper.views.regime_selection`; the book's
  training page);
- ``variant-selection.json``: the recorded result of ``benchmarks/select_variant.py``, whether a
  proxy-study variant that qualified under the adoption rule keeps up with the default on
  validation identities (`mmhpn.paper.views.variant_selection`; the "Paper or proxy?" page);
- ``training-semantics.json``: the training-semantics record (`mmhpn.versions`).

A recorded result the library reads lives here, never under ``benchmarks/`` or another
folder of the repository, so that an installed wheel finds it too; `read_text` reads one.
"""
from __future__ import annotations

from importlib import resources

from mmhpn.errors import ConfigError


def read_text(name: str) -> str:
    """The text of the recorded file `name` of this package (e.g. ``"regime-selection.json"``)."""
    file = resources.files(__name__).joinpath(name)
    if not file.is_file():
        raise ConfigError(f"no recorded file {name!r} in the mmhpn.resources package data; expected it "
                          f"under mmhpn/resources/ (see that package's docstring for what lives there)")
    return file.read_text(encoding="utf-8")
