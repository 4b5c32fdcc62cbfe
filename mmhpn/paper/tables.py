"""The paper's tables as data: rows in the paper's order, the claims each makes, and the knobs
the notebooks expose.

Each ablation table (Tables 4-7) and Figure 5 is a list of rows; a row is a label and the
`mmhpn.config.TrainConfig` fields it changes. A model shared by several tables is trained
once because identical configurations hash identically (the run cache); for that to hold, a
shared row is spelled the same way everywhere (`BASELINE`, `MMHPN_GAP`, `MMHPN_APS`,
`MMHPN_PSL`).

Decisions that the rows encode (the book's reproduction notes explain them):

* Tables 4 and 5 use GAP and the softmax loss: their last row equals Table 6's GAP row in
  the paper (93.6 / 82.3 on Market-1501), so the ablations were run before APS and PSL.
* Table 6 varies the pooling of the full layout with the softmax loss; its APS row is
  Table 7's softmax row.
* Table 5's rows 1, 1+2 and 1+2+4 grow the `mmhpn` layout from the global branch outward,
  each new scale at the tap the preset gives it: 1 = ``conv5_3: 1`` (the baseline),
  1+2 adds ``conv5_2: 2``, 1+2+4 adds ``conv5_1: 4``, 1+2+4+8 adds ``conv5_1: 8``
  (= the ``mmhpn`` preset, ``conv5_1: 8, 4 | conv5_2: 2 | conv5_3: 1``).
* Figure 5 pools n stripes from the final layer only (a single-scale MHPM, GAP, softmax);
  its 1-stripe point is the baseline's configuration. The paper's points are 1, 2, 4, 8 and
  12 (`FIGURE5_PAPER_STRIPES`); the default build trains 1, 2, 4 and 8 (`FIGURE5_STRIPES`,
  every point its claims concern) at the profile's 128x64, where the 1-stripe point is Table
  4's baseline run; 12 stripes need 12 feature-map rows, i.e. inputs 192 pixels high.
* Table 7 compares the softmax loss with the PSL (paper gammas, single-stripe scales
  trained with the plain softmax loss, ``single_stripe="ce"``) and shows the other two
  single-stripe rules: ``literal`` (the global stripe gets no loss) and ``focal``. A control
  row not in the paper, ``weighted_softmax``, multiplies each scale's softmax loss by the
  constant mean PSL factor of that scale measured over the PSL run of the same seed
  (`mmhpn.paper.planner.psl_scale_weights`); the planner trains the PSL row first and derives
  the control from it.
* The "layouts" table (not in the paper) trains four placements of the same 15 stripes
  with Table 6's APS + softmax recipe: the text's reading (the preset, ``8, 4 | 2 | 1``),
  ``8 | 4, 2 | 1``, the previous preset ``8 | 4 | 2, 1`` and all four at conv5_3 (Table 4's
  MHPM layout, here with APS). Its first row is Table 6's APS row (one training). The
  paper claims nothing here; the table's `questions` are ours.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from mmhpn.errors import ConfigError

# Shared rows, spelled once so that every table hashes them identically.
BASELINE: dict[str, Any] = {"preset": "baseline", "pooling": "avg", "loss": "softmax"}
MMHPN_GAP: dict[str, Any] = {"preset": "mmhpn", "pooling": "avg", "loss": "softmax"}
MMHPN_GMP: dict[str, Any] = {"preset": "mmhpn", "pooling": "max", "loss": "softmax"}
MMHPN_APS: dict[str, Any] = {"preset": "mmhpn", "pooling": "aps", "loss": "softmax"}
MMHPN_PSL: dict[str, Any] = {"preset": "mmhpn", "pooling": "aps", "loss": "psl", "single_stripe": "ce"}
# The control's fields; its scale_weights come from the PSL run (`Row.scale_weights_from`).
MMHPN_PSL_CONTROL: dict[str, Any] = {"preset": "mmhpn", "pooling": "aps", "loss": "weighted_softmax"}
PSL_CONTROL_LABEL = "MMHPN+softmax × mean PSL factors (control, not in the paper)"
OURS = "not in the paper (ours)"  # the source of a question we ask, not a claim of the paper


@dataclass(frozen=True)
class Row:
    """One row of a table: its label as in the paper and the TrainConfig fields it sets.

    `scale_weights_from` names an earlier PSL row of the same table: this row's
    ``scale_weights`` are that row's mean PSL factors, measured per seed on the finished
    PSL run (`psl_scale_weights`). Such a row can only be run after that one.
    """

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    scale_weights_from: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """A paper table: key in the paper-number file, caption and rows in the paper's order."""

    key: str
    caption: str
    rows: tuple[Row, ...]
    # (better, worse) row-label pairs whose order the paper claims; checked per metric where
    # the paper's own numbers show it (`paper_claims`). A third element names the metrics the
    # paper claims it on, where its text restricts them.
    claims: tuple[tuple, ...] = ()
    # (better, worse) pairs the paper's numbers order but its text does not claim ("numbers
    # only"): checked, shown, and left out of the paper's family of claims (`mmhpn.claims.holm`).
    numbers_only: tuple[tuple[str, str], ...] = ()
    # (better, worse) pairs *we* ask about, not claimed by the paper (same check as claims).
    questions: tuple[tuple[str, str], ...] = ()
    # False for our own tables: no paper numbers, no paper claims (summarize with key=None).
    in_paper: bool = True

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise ConfigError(f"{self.key} has no row {label!r}; rows: {[r.label for r in self.rows]}")


TABLES: dict[str, TableSpec] = {
    "table4": TableSpec(
        key="table4",
        caption="Table 4: effectiveness of the multi-level (MSM) and multi-scale (MHPM) modules",
        rows=(
            Row("Baseline", BASELINE),
            Row("Baseline+MSM", {"preset": "msm", "pooling": "avg", "loss": "softmax"}),
            Row("Baseline+MHPM", {"preset": "mhpm", "pooling": "avg", "loss": "softmax"}),
            Row("Baseline+MMHPN", MMHPN_GAP),
        ),
        # Sec. 4.4.1: MSM and MHPM each improve on the baseline, MHPM more than MSM. Of the full
        # model over MHPM the text says only that the results are "promising": numbers only.
        claims=(("Baseline+MSM", "Baseline"), ("Baseline+MHPM", "Baseline"), ("Baseline+MHPM", "Baseline+MSM")),
        numbers_only=(("Baseline+MMHPN", "Baseline+MHPM"),),
    ),
    "table5": TableSpec(
        key="table5",
        caption="Table 5: effectiveness of the number of body parts (scales)",
        rows=(
            Row("1", BASELINE),
            Row("1+2", {"preset": "mmhpn", "layout": {"conv5_2": (2,), "conv5_3": (1,)},
                        "pooling": "avg", "loss": "softmax"}),
            Row("1+2+4", {"preset": "mmhpn", "layout": {"conv5_1": (4,), "conv5_2": (2,), "conv5_3": (1,)},
                          "pooling": "avg", "loss": "softmax"}),
            Row("1+2+4+8", MMHPN_GAP),
        ),
        claims=(("1+2", "1"), ("1+2+4", "1+2"), ("1+2+4+8", "1+2+4")),
    ),
    "table6": TableSpec(
        key="table6",
        caption="Table 6: effectiveness of the pooling strategy (GAP, GMP, APS)",
        rows=(
            Row("MMHPN+GAP", MMHPN_GAP),
            Row("MMHPN+GMP", MMHPN_GMP),
            Row("MMHPN+APS", MMHPN_APS),
        ),
        # Sec. 4.4.3: GMP beats GAP (all six of the paper's numbers show it) and APS beats both.
        claims=(("MMHPN+GMP", "MMHPN+GAP"), ("MMHPN+APS", "MMHPN+GAP"), ("MMHPN+APS", "MMHPN+GMP")),
    ),
    "table7": TableSpec(
        key="table7",
        caption="Table 7: softmax loss vs Part Sensitive Loss (and the PSL's single-stripe rules)",
        rows=(
            Row("MMHPN+softmax", MMHPN_APS),
            Row("MMHPN+PSL", MMHPN_PSL),
            Row("MMHPN+PSL (literal: global stripe untrained)",
                {"preset": "mmhpn", "pooling": "aps", "loss": "psl", "single_stripe": "literal"}),
            Row("MMHPN+PSL (focal on single stripes)",
                {"preset": "mmhpn", "pooling": "aps", "loss": "psl", "single_stripe": "focal"}),
            Row(PSL_CONTROL_LABEL, MMHPN_PSL_CONTROL, scale_weights_from="MMHPN+PSL"),
        ),
        # On mAP only: Sec. 4.4.4 says the PSL "may not ensure the best performance using the
        # Rank1 accuracy".
        claims=(("MMHPN+PSL", "MMHPN+softmax", ("mAP",)),),
        # Is the PSL more than a constant re-weighting of the scales? (ours, not the paper's)
        questions=(("MMHPN+PSL", PSL_CONTROL_LABEL),),
    ),
    # Not in the paper: which tap carries which scale. Same 15 stripes, same recipe as
    # Table 6's APS row (APS + softmax: the pooling the paper's model uses, without the PSL,
    # whose gammas are tied to the scale order, not to the taps). The first row *is* that
    # row, so the run cache trains it once.
    "layouts": TableSpec(
        key="layouts",
        caption="Not in the paper: which tap carries which scale (the same 15 stripes, APS + softmax)",
        in_paper=False,
        rows=(
            Row("8, 4 | 2 | 1 (the text's reading)", MMHPN_APS),
            Row("8 | 4, 2 | 1", {"preset": "mmhpn", "layout": {"conv5_1": (8,), "conv5_2": (4, 2), "conv5_3": (1,)},
                                 "pooling": "aps", "loss": "softmax"}),
            Row("8 | 4 | 2, 1 (the previous preset)",
                {"preset": "mmhpn", "layout": {"conv5_1": (8,), "conv5_2": (4,), "conv5_3": (2, 1)},
                 "pooling": "aps", "loss": "softmax"}),
            Row("all at conv5_3 (MHPM)", {"preset": "mhpm", "pooling": "aps", "loss": "softmax"}),
        ),
        # The paper claims nothing here; our questions, "does the text's reading beat this
        # alternative?", are checked with the same machinery as the paper's claims.
        questions=(("8, 4 | 2 | 1 (the text's reading)", "8 | 4, 2 | 1"),
                   ("8, 4 | 2 | 1 (the text's reading)", "8 | 4 | 2, 1 (the previous preset)"),
                   ("8, 4 | 2 | 1 (the text's reading)", "all at conv5_3 (MHPM)")),
    ),
}

FIGURE5_PAPER_STRIPES = (1, 2, 4, 8, 12)
FIGURE5_STRIPES = (1, 2, 4, 8)  # what the default build trains (its notebook's default)
# Sec. 4.4.2 on Figure 5 (Market-1501): "as body scale increases, the mAP and Rank1 accuracy
# generally improve", and 8 stripes beat 1 by 9.6 mAP / 6.9 Rank-1. Of 12 stripes it says
# only that they bring "no obvious improvement": not an ordering, so not checked.
FIGURE5_CLAIMS = (("2", "1"), ("4", "2"), ("8", "4"), ("8", "1"))
FIGURE5_SOURCE = "paper text, Sec. 4.4.2: Market-1501"
# The differences the text states (the figure's other points are not printed as numbers).
FIGURE5_DIFFS = {("8", "1"): {"mAP": (("Market-1501", 9.6),), "rank1": (("Market-1501", 6.9),)}}


def figure5_rows(stripe_counts: Iterable[int] = FIGURE5_STRIPES) -> tuple[Row, ...]:
    """Figure 5's points: n stripes pooled from conv5_3 only (GAP, softmax); n = 1 is the baseline."""
    rows = []
    for count in stripe_counts:
        if count == 1:
            rows.append(Row("1", BASELINE))
        else:
            rows.append(Row(str(count), {"preset": "baseline", "layout": {"conv5_3": (int(count),)},
                                         "pooling": "avg", "loss": "softmax"}))
    return tuple(rows)


def row_layout(row: Row) -> dict[str, tuple[int, ...]]:
    """The {tap: stripe counts} a row trains: its own layout, else its preset's."""
    from mmhpn.model import PRESETS

    layout = row.overrides.get("layout")
    if layout is None:
        return dict(PRESETS[row.overrides.get("preset", "mmhpn")])
    return {tap: tuple(counts) if isinstance(counts, (list, tuple)) else (counts,) for tap, counts in layout.items()}


def get_table(key: str) -> TableSpec:
    """The table of `TABLES` named `key` (one line naming the known tables otherwise)."""
    if key not in TABLES:
        raise ConfigError(f"unknown table {key!r}; known tables: {sorted(TABLES)}")
    return TABLES[key]


# ---------------------------------------------------------------------------------------
# each table's knobs, as the notebooks expose them

POOLING_ROWS = {"avg": "MMHPN+GAP", "max": "MMHPN+GMP", "aps": "MMHPN+APS"}  # Table 6


def table_rows(key: str, layouts: Mapping[str, Any] | None = None, poolings: Sequence[str] | None = None,
               gammas: Sequence[float] | None = None,
               single_stripe_rules: Sequence[str] | None = None) -> tuple[Row, ...]:
    """The rows of table `key` with the knobs its notebook exposes (None keeps the paper's rows).

    * `layouts` (Tables 4, 5, layouts): ``{row label: {tap: stripe counts}}`` replaces those
      rows' layouts (a row not named keeps its own);
    * `poolings` (Table 6): which of ``avg``, ``max``, ``aps`` to train, in that order;
    * `gammas` (Table 7): the PSL's gammas, one per scale (coarsest last), for every PSL row;
    * `single_stripe_rules` (Table 7): which PSL rows to train, by their single-stripe rule
      (``ce`` the main row, ``literal``, ``focal``); the control needs ``ce``.

    With the default values the rows are exactly `TABLES[key].rows`, so they hash as before.
    """
    rows = list(get_table(key).rows)
    if layouts:
        labels = {row.label for row in rows}
        unknown = sorted(set(layouts) - labels)
        if unknown:
            raise ConfigError(f"layouts names row(s) {unknown} that {key} does not have; rows: {sorted(labels)}")
        rows = [replace(row, overrides={**row.overrides, "layout": layouts[row.label]}) if row.label in layouts
                else row for row in rows]
    if poolings is not None:
        if key != "table6":
            raise ConfigError("poolings is Table 6's knob")
        unknown = [p for p in poolings if p not in POOLING_ROWS]
        if unknown or not poolings:
            raise ConfigError(f"poolings must name some of {list(POOLING_ROWS)}, got {list(poolings)!r}")
        rows = [get_table(key).row(POOLING_ROWS[p]) for p in poolings]
    if gammas is not None or single_stripe_rules is not None:
        if key != "table7":
            raise ConfigError("gammas and single_stripe_rules are Table 7's knobs")
    if gammas is not None:
        rows = [replace(row, overrides={**row.overrides, "gammas": tuple(float(g) for g in gammas)})
                if row.overrides.get("loss") == "psl" else row for row in rows]
    if single_stripe_rules is not None:
        rules = set(single_stripe_rules)
        known = {row.overrides["single_stripe"] for row in rows if row.overrides.get("loss") == "psl"}
        if rules - known:
            raise ConfigError(f"single_stripe_rules must name some of {sorted(known)}, got {list(single_stripe_rules)!r}")
        kept = [row for row in rows if row.overrides.get("loss") != "psl" or row.overrides["single_stripe"] in rules]
        labels = {row.label for row in kept}
        rows = [row for row in kept if row.scale_weights_from is None or row.scale_weights_from in labels]
    return tuple(rows)
