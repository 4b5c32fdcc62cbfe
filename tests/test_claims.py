"""Intervals, verdicts and the paper-claim filter, on hand-made per-seed numbers."""
import math

import pandas as pd
import pytest

from mmhpn import claims
from mmhpn.paper import numbers, tables
from mmhpn.claims import Claim


def results_from(per_seed: dict[str, list[float]]) -> pd.DataFrame:
    """A run_rows-like frame: one line per (row, seed); rank1 = mAP + 10 for simplicity."""
    lines = [{"row": row, "seed": seed, "mAP": value, "rank1": value + 10.0, "train_s": 1.0, "run": "nowhere",
              "run_hash": f"{row}-{seed}"}
             for row, values in per_seed.items() for seed, value in enumerate(values)]
    return pd.DataFrame(lines)


def test_t_interval_matches_the_textbook_formula():
    mean, low, high = claims.t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3, t_{0.975,2} = 4.302653
    assert mean == pytest.approx(2.0)
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)


def test_one_seed_gives_no_interval_and_an_inconclusive_verdict():
    mean, low, high = claims.t_interval([1.5])
    assert mean == 1.5 and math.isnan(low) and math.isnan(high)
    assert claims.verdict(low, high) == "inconclusive"


@pytest.mark.parametrize("better, expected", [
    ([60.0, 61.0, 62.0], "supported"),       # +10, +10.5, +11 over the worse row
    ([40.0, 41.0, 42.0], "contradicted"),    # -10, -9.5, -9
    ([55.0, 45.0, 52.0], "inconclusive"),    # +5, -5.5, +1: the interval contains 0
])
def test_each_verdict(better, expected):
    results = results_from({"A": better, "B": [50.0, 50.5, 51.0]})
    checked = claims.check_claims(results, [Claim("t", "A", "B", "mAP", "test")])
    assert list(checked.columns) == list(claims.CLAIM_COLUMNS)
    line = checked.iloc[0]
    assert line["verdict"] == expected
    assert line["n_seeds"] == 3
    assert line["ci_low"] <= line["mean"] <= line["ci_high"]


def test_differences_are_paired_by_seed():
    results = results_from({"A": [10.0, 20.0, 30.0], "B": [9.0, 19.0, 29.0]})
    # unpaired, the rows overlap completely; paired, A wins by exactly 1 on every seed
    diff = claims.paired_differences(results, "A", "B", "mAP")
    assert diff.tolist() == [1.0, 1.0, 1.0]
    checked = claims.check_claims(results, [Claim("t", "A", "B", "mAP", "test")])
    assert checked.iloc[0]["verdict"] == "supported"  # zero spread: the interval is the point +1
    assert checked.iloc[0]["note"].startswith("zero variance")  # ...which no real re-run shows: flagged
    assert math.isnan(checked.iloc[0]["p_value"])


def test_a_result_that_is_not_a_number_is_refused_in_one_line():
    from mmhpn.errors import ConfigError

    results = results_from({"A": [60.0, float("nan"), 62.0], "B": [50.0, 50.5, 51.0]})
    with pytest.raises(ConfigError, match=r"row 'A' has a mAP that is not a finite number for seed\(s\) \[1\]"):
        claims.check_claims(results, [Claim("t", "A", "B", "mAP", "test")])


def test_p_value_agrees_with_the_interval():
    for diffs in ([1.0, 2.0, 3.0], [0.5, -0.2, 0.4], [-1.0, -1.5, -0.7, -1.2]):
        mean, low, high = claims.t_interval(diffs)
        excludes_zero = low > 0 or high < 0
        assert (claims.p_value(diffs) < 0.05) == excludes_zero


def test_the_papers_difference_beside_ours_and_the_size_reading():
    # Table 4's MSM > Baseline: the paper's +7.4 mAP on Market-1501 (77.3 - 69.9).
    small = results_from({"Baseline": [60.0, 61.0, 62.0], "Baseline+MSM": [61.0, 61.8, 63.1]})
    line = numbers.check_table("table4", small).set_index(["better", "worse", "metric"]).loc[
        ("Baseline+MSM", "Baseline", "mAP")]
    assert line["paper_diff"] == "Market-1501 +7.4; DukeMTMC-reID +5.5; CUHK03 +12.2"
    assert line["reference_dataset"] == "Market-1501" and line["paper_reference"] == pytest.approx(7.4)
    assert line["verdict"] == "supported" and line["size_reading"] == claims.SMALLER
    large = results_from({"Baseline": [60.0, 61.0, 62.0], "Baseline+MSM": [67.0, 68.8, 70.1]})
    line = numbers.check_table("table4", large).set_index(["better", "worse", "metric"]).loc[
        ("Baseline+MSM", "Baseline", "mAP")]
    assert line["size_reading"] == claims.AS_LARGE  # +7.4 lies inside our interval
    assert claims.size_reading(1.0, 2.0, math.nan) == "no paper difference"
    assert claims.size_reading(math.nan, math.nan, 7.4) == "no interval"
    assert claims.size_reading(8.0, 9.0, 7.4) == claims.AS_LARGE  # the paper's below ours


def test_holm_adjusts_the_papers_family_only():
    checked = pd.DataFrame({
        "family": [True, True, True, False], "n_seeds": [3, 3, 3, 3], "mean": [1.0, 2.0, -1.0, 5.0],
        "p_value": [0.01, 0.02, 0.04, 0.001], "source": ["paper", "paper", "paper", "not in the paper (ours)"],
    })
    adjusted = claims.holm(checked)
    # sorted p 0.01, 0.02, 0.04 times 3, 2, 1: 0.03, 0.04, 0.04 (kept non-decreasing)
    assert adjusted["p_holm"].iloc[:3].tolist() == pytest.approx([0.03, 0.04, 0.04])
    assert adjusted["verdict_holm"].tolist() == ["supported", "supported", "contradicted", ""]
    assert math.isnan(adjusted["p_holm"].iloc[3])
    one_more = claims.holm(pd.concat([checked, checked.iloc[:1].assign(p_value=0.03)], ignore_index=True))
    # four tests now: 0.01*4 = 0.04, then 0.02*3 = 0.06: the second claim no longer survives
    assert one_more["verdict_holm"].tolist()[:3] == ["supported", "inconclusive", "inconclusive"]


def test_the_claim_set_as_the_paper_states_it():
    def pairs(key, dataset="synthetic"):
        return {(c.better, c.worse, c.metric): c for c in numbers.table_claims(key, dataset)}

    table4, table6, table7 = pairs("table4"), pairs("table6"), pairs("table7")
    assert ("Baseline+MHPM", "Baseline", "mAP") in table4  # Sec. 4.4.1
    assert ("MMHPN+GMP", "MMHPN+GAP", "mAP") in table6 and ("MMHPN+GMP", "MMHPN+GAP", "rank1") in table6  # 4.4.3
    assert ("MMHPN+PSL", "MMHPN+softmax", "mAP") in table7
    assert ("MMHPN+PSL", "MMHPN+softmax", "rank1") not in table7  # "may not ensure ... Rank1"
    numbers_only = table4[("Baseline+MMHPN", "Baseline+MHPM", "mAP")]
    assert not numbers_only.family and "numbers only" in numbers_only.source
    assert table4[("Baseline+MSM", "Baseline", "mAP")].family
    # A CUHK03 build checks CUHK03's numbers only: there GMP beats APS in mAP (64.7 > 64.5).
    cuhk = pairs("table6", "cuhk03-np")
    assert ("MMHPN+APS", "MMHPN+GMP", "mAP") not in cuhk and ("MMHPN+APS", "MMHPN+GMP", "rank1") in cuhk
    assert cuhk[("MMHPN+APS", "MMHPN+GMP", "rank1")].paper_diffs == (("CUHK03", 0.4),)
    assert numbers.table_claims("figure5", "dukemtmc-reid") == []  # the text's numbers are Market-1501's


def test_the_summary_counts_the_papers_claims_and_our_questions_apart():
    results = results_from({"MMHPN+softmax": [60.0, 61.0, 62.0], "MMHPN+PSL": [61.0, 61.8, 63.1],
                            tables.PSL_CONTROL_LABEL: [60.5, 61.9, 62.2]})
    checked = claims.holm(numbers.check_table("table7", results))
    groups = claims.claim_groups(checked)
    assert [len(g) for g in groups.values()] == [1, 0, 2]
    summary = claims.verdict_summary(checked)
    assert summary.startswith("of the paper's claims (1), 1 of 1 is supported (1 supported after Holm")
    assert "of our own questions (2)" in summary


def test_a_row_that_was_not_trained_is_not_run():
    results = results_from({"A": [1.0, 2.0]})
    checked = claims.check_claims(results, [Claim("t", "A", "B", "mAP", "test")])
    assert checked.iloc[0]["verdict"] == "not run"
    assert claims.claims_table(checked).iloc[0].iloc[4] == "not run"


def test_claims_are_kept_only_where_the_papers_numbers_show_them():
    # Table 6: APS beats GMP in mAP on Market (83.1 > 82.8) and Duke (74.6 > 74.3) but not on
    # CUHK03 (64.5 < 64.7); in Rank-1 on Market (94.2 > 93.9) and CUHK03 (68.3 > 67.9), not Duke.
    found = {c.metric: c.source for c in numbers.paper_claims("table6", [("MMHPN+APS", "MMHPN+GMP")])}
    assert found["mAP"] == "paper: Market-1501, DukeMTMC-reID"
    assert found["rank1"] == "paper: Market-1501, CUHK03"
    # A pair the paper's numbers never show is not a claim at all.
    assert numbers.paper_claims("table6", [("MMHPN+GAP", "MMHPN+APS")]) == []


def test_verdict_sentence_counts():
    checked = pd.DataFrame({"verdict": ["supported", "supported", "inconclusive"]})
    assert claims.verdict_sentence(checked) == "2 of 3 are supported; 1 of 3 is inconclusive"


def test_records_round_trip(tmp_path):
    results = results_from({"A": [60.0, 61.0, 62.0], "B": [50.0, 50.5, 51.0]})
    checked = claims.check_claims(results, [Claim("t", "A", "B", "mAP", "test")])
    claims.write_records("t", results, checked, tmp_path)
    read_results, read_claims = claims.read_records(tmp_path)
    assert list(read_results.columns) == list(claims.RESULT_COLUMNS)
    assert len(read_results) == 6 and set(read_results["table"]) == {"t"}
    assert list(read_claims.columns) == list(claims.CLAIM_COLUMNS)
    assert read_claims.iloc[0]["verdict"] == "supported"


def test_every_table_has_claims_and_figure5_cites_the_text():
    for key in tables.TABLES:
        found = numbers.table_claims(key)
        assert found, key
        assert all(c.metric in claims.METRICS for c in found)
    fig5 = numbers.table_claims("figure5")
    assert {(c.better, c.worse) for c in fig5} == set(tables.FIGURE5_CLAIMS)
    assert all(c.source.startswith("paper text") for c in fig5)


def test_table_bars_and_claims_forest_draw_every_row_and_claim():
    from mmhpn import figures

    results = results_from({"A": [60.0, 61.0, 62.0], "B": [50.0, 50.5, 51.0]})
    fig = figures.table_bars(results, ["A", "B"], title="t", measured_on="synthetic (tiny)")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["A", "B"]
    checked = claims.check_claims(results, [Claim("t", "A", "B", "mAP", "test"), Claim("t", "B", "A", "rank1", "test")])
    forest = figures.claims_forest(checked)
    assert len(forest.axes[0].get_yticklabels()) == 2
    assert len(forest.axes[0].collections) >= 2  # one interval line per claim


def test_check_table_writes_records_only_when_asked(tmp_path):
    results = results_from({"Baseline": [1.0, 2.0, 3.0], "Baseline+MSM": [2.0, 3.5, 4.0]})
    numbers.check_table("table4", results)
    assert not any(tmp_path.iterdir())
    numbers.check_table("table4", results, records_dir=str(tmp_path / "records"))
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["table4.claims.csv", "table4.results.csv"]


def test_claims_forest_draws_claims_without_an_interval():
    from mmhpn import figures

    results = pd.DataFrame({"row": ["A", "B"], "seed": [0, 0], "mAP": [30.0, 20.0], "rank1": [40.0, 35.0]})
    checked = claims.check_claims(results, [claims.Claim("t", "A", "B", "mAP", "ours"),
                                            claims.Claim("t", "A", "C", "mAP", "ours")])
    assert checked["ci_low"].isna().all() and checked["verdict"].tolist() == ["inconclusive", "not run"]
    fig = figures.claims_forest(checked)  # one seed: a bare dot; a claim not run: a label only
    assert len(fig.axes[0].get_yticklabels()) == 2


def test_the_forest_marks_the_papers_difference():
    from mmhpn import figures

    results = results_from({"Baseline": [60.0, 61.0, 62.0], "Baseline+MSM": [61.0, 61.8, 63.1]})
    checked = numbers.check_table("table4", results)
    ax = figures.claims_forest(checked).axes[0]
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    # one cross per claim with a paper difference, at that difference (Market-1501's +7.4 for MSM > Baseline mAP)
    assert len(crosses) == checked["paper_reference"].notna().sum()
    assert any(line.get_xdata()[0] == pytest.approx(7.4) for line in crosses)
    assert "the paper's difference (Market-1501)" in [t.get_text() for t in ax.get_legend().get_texts()]
