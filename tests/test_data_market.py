"""Market-layout parsing, conventions (relabel, junk, distractors, cameras) and bad input."""
import warnings
from pathlib import Path

import pytest
from PIL import Image

from mmhpn.data import count_unmatched_queries, load_dataset, load_market_layout, parse_image_name
from mmhpn.data.checks import check_image_files
from mmhpn.errors import ConfigError, DatasetError


def _touch_image(path: Path, color=(120, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), color).save(path)


def make_layout(root: Path, train=(), gallery=(), query=(), gt_bbox=None, ext=".jpg") -> Path:
    """A Market-style folder with tiny images; names are given without extension."""
    for folder, names in (("bounding_box_train", train), ("bounding_box_test", gallery), ("query", query)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            _touch_image(root / folder / f"{name}{ext}")
    if gt_bbox is not None:
        (root / "gt_bbox").mkdir(parents=True, exist_ok=True)
        for name in gt_bbox:
            _touch_image(root / "gt_bbox" / f"{name}{ext}")
    return root


MARKET_LIKE = dict(
    train=["0007_c1s1_000100_01", "0007_c2s1_000200_01", "0002_c6s1_000300_01", "0009_c3s2_000400_01"],
    gallery=["0003_c2s1_000500_01", "0003_c3s1_000600_01", "0005_c1s1_000700_01", "0005_c4s1_000800_01",
             "0000_c1s1_000900_02", "0000_c5s1_001000_02", "-1_c1s1_001100_03", "-1_c2s1_001200_03",
             "-1_c3s1_001300_03"],
    query=["0003_c1s1_001400_00", "0005_c2s1_001500_00"],
    gt_bbox=["0003_c1s1_001400_00", "0003_c1s1_001401_00", "0005_c2s1_001500_00", "0007_c1s1_001600_00"],
)


@pytest.fixture()
def market_root(tmp_path):
    root = make_layout(tmp_path / "Market-1501-v15.09.15", **MARKET_LIKE)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"not an image")
    (root / "query" / "readme.txt").write_text("ignored")
    return root


def test_parse_names_of_each_release():
    assert parse_image_name("0002_c1s1_000451_03.jpg") == (2, 0)  # Market-1501
    assert parse_image_name("0001_c8_f0046182.jpg") == (1, 7)  # DukeMTMC-reID
    assert parse_image_name("1467_c2_10.png") == (1467, 1)  # CUHK03-NP
    assert parse_image_name("-1_c3s2_000001_01.jpg") == (-1, 2)  # junk
    assert parse_image_name("0000_c6s3_000001_01.jpg") == (0, 5)  # distractor
    assert parse_image_name("img_0001.jpg") is None
    assert parse_image_name("0001_c0_1.jpg") is None  # cameras are numbered from 1


def test_conventions_relabel_junk_distractors_cameras(market_root):
    ds = load_market_layout(market_root)
    # Training ids relabelled 0..N-1 in order of the original id; Thumbs.db ignored.
    assert ds.train_pid_map == {2: 0, 7: 1, 9: 2}
    assert ds.num_train_pids == 3
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 5), (1, 0), (1, 1), (2, 2)]
    # Junk dropped and counted, distractors kept in the gallery, test ids keep their original value.
    assert all(r.pid != -1 for r in ds.gallery)
    assert sum(r.pid == 0 for r in ds.gallery) == 2
    assert len(ds.gallery) == 6 and ds.dropped["gallery_junk"] == 3
    assert sorted(r.pid for r in ds.query) == [3, 5]
    assert all(Path(r.path).is_file() for r in ds.train + ds.query + ds.gallery)
    # Multi-query: gt_bbox images of query identities only (training id 7 left out, counted).
    assert sorted(r.pid for r in ds.multi_query) == [3, 3, 5]
    assert ds.dropped["multi_query_not_query_ids"] == 1
    # Records are sorted by file name: the order never depends on the file system.
    assert [r.path for r in ds.gallery] == sorted(r.path for r in ds.gallery)


def test_statistics_table(market_root):
    stats = load_market_layout(market_root).statistics()
    assert list(stats.index) == ["train", "query", "gallery", "multi_query"]
    assert list(stats.columns) == ["ids", "images", "cameras", "distractors"]
    assert stats.loc["train"].tolist() == [3, 4, 4, 0]
    assert stats.loc["query"].tolist() == [2, 2, 2, 0]
    assert stats.loc["gallery"].tolist() == [2, 6, 5, 2]  # ids exclude the distractor id 0
    assert "gallery_junk: 3" in load_market_layout(market_root).summary()


def test_registry_finds_release_folders_and_variants(market_root, tmp_path):
    # market1501: the root itself, or the folder that holds the release folder.
    assert load_dataset("market1501", market_root).name == "market1501"
    assert len(load_dataset("market1501", market_root.parent).train) == 4
    duke = make_layout(tmp_path / "duke" / "DukeMTMC-reID", train=["0001_c1_f0000001", "0001_c8_f0000002"],
                       gallery=["0005_c2_f0000003", "0005_c7_f0000004"], query=["0005_c1_f0000005"])
    ds = load_dataset("dukemtmc-reid", duke.parent)
    assert ds.num_cameras == 4 and {r.camid for r in ds.train} == {0, 7}
    for variant in ("detected", "labeled"):
        make_layout(tmp_path / "cuhk" / "cuhk03-np" / variant, train=["0001_c1_1", "0001_c2_2"],
                    gallery=["0010_c1_1", "0010_c2_2"], query=["0010_c1_3"], ext=".png")
    assert load_dataset("cuhk03-np", tmp_path / "cuhk").name == "cuhk03-np-detected"
    assert load_dataset("cuhk03-np", tmp_path / "cuhk" / "cuhk03-np", variant="labeled").name == "cuhk03-np-labeled"
    with pytest.raises(ConfigError, match="variant"):
        load_dataset("cuhk03-np", tmp_path / "cuhk", variant="both")
    with pytest.raises(DatasetError, match="detected/"):
        load_dataset("cuhk03-np", tmp_path / "duke")
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("viper", tmp_path)


def test_synthetic_through_the_registry(tmp_path):
    ds = load_dataset("synthetic", tmp_path / "syn", preset="tiny", seed=1)
    assert ds.num_train_pids == 16 and len(ds.query) > 0 and len(ds.multi_query) > 0
    with pytest.raises(DatasetError, match="mmhpn synth"):
        load_dataset("synthetic", tmp_path / "absent", preset="tiny", generate=False)


def test_missing_root_and_split_folder(tmp_path, market_root):
    with pytest.raises(DatasetError, match="does not exist.*bounding_box_train"):
        load_market_layout(tmp_path / "nowhere")
    (market_root / "query").rename(market_root / "queries")
    with pytest.raises(DatasetError, match=r"lacks the split folder\(s\) query/.*expected"):
        load_market_layout(market_root)


def test_unparsable_names_are_named(market_root):
    for k in range(7):
        _touch_image(market_root / "bounding_box_test" / f"person{k}.jpg")
    with pytest.raises(DatasetError, match=r"7 image file name\(s\).*person0.jpg.*and 2 more.*0002_c1s1"):
        load_market_layout(market_root)


def test_empty_and_junk_only_splits(tmp_path):
    root = make_layout(tmp_path / "a", train=["0001_c1s1_000001_01"], gallery=["0002_c1s1_000001_01"], query=[])
    with pytest.raises(DatasetError, match="query contains no images"):
        load_market_layout(root)
    root = make_layout(tmp_path / "b", train=["-1_c1s1_000001_01", "0000_c1s1_000001_01"],
                       gallery=["0002_c1s1_000001_01"], query=["0002_c2s1_000001_01"])
    with pytest.raises(DatasetError, match="bounding_box_train holds only junk"):
        load_market_layout(root)


def test_query_without_cross_camera_match_warns_with_count(tmp_path):
    root = make_layout(tmp_path / "m", train=["0001_c1s1_000001_01"],
                       gallery=["0002_c1s1_000001_01", "0003_c1s1_000001_01", "0003_c2s1_000001_01"],
                       query=["0002_c1s1_000002_00", "0003_c1s1_000002_00", "0004_c1s1_000002_00"])
    with pytest.warns(UserWarning, match="2 of 3 query images have no gallery image"):
        ds = load_market_layout(root)
    assert count_unmatched_queries(ds.query, ds.gallery) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_market_layout(root, warn_unmatched=False)


def test_corrupt_image_is_named_when_verifying(market_root):
    bad = market_root / "query" / "0003_c1s1_001400_00.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    load_market_layout(market_root)  # not decoded at load time by default: fast on real datasets
    with pytest.raises(DatasetError, match=r"1 unreadable or corrupt image\(s\): .*0003_c1s1_001400_00.jpg"):
        load_market_layout(market_root, verify_images=True)
    with pytest.raises(DatasetError, match="0003_c1s1_001400_00.jpg"):
        check_image_files([str(bad)], decode=True)
