"""Dataset checks before training: unreadable images in any split, decompression bombs, symbolic link
loops and a single training identity each fail in one line, before any run folder is written."""
from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from mmhpn.cli import main as cli_main
from mmhpn.config import make_config
from mmhpn.data import decode_image, load_data, load_market_layout
from mmhpn.data.checks import check_image_files, first_few
from mmhpn.errors import DatasetError


@pytest.fixture
def data_root(tiny_root, tmp_path) -> Path:
    """A copy of the tiny synthetic dataset that a test may damage."""
    return Path(shutil.copytree(tiny_root, tmp_path / "tiny"))


def unit_config(root: Path):
    return make_config("unit", data_root=str(root))


def first_image(root: Path, folder: str, junk: bool = False) -> Path:
    """The first image of `folder` by name: a junk one (id -1) or one the loader keeps."""
    return next(p for p in sorted((root / folder).iterdir()) if p.name.startswith("-1_") == junk)


def keep_one_training_identity(root: Path) -> int:
    """Delete every training image but those of the first identity; return its id."""
    train = sorted((root / "bounding_box_train").iterdir())
    kept = train[0].name[:4]
    for path in train:
        if not path.name.startswith(kept):
            path.unlink()
    return int(kept)


def png_header(width: int, height: int) -> bytes:
    """A valid PNG header (no pixel data) announcing a width x height RGB image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("folder", ["bounding_box_train", "query", "bounding_box_test", "gt_bbox"])
def test_a_zero_byte_image_in_any_split_is_refused_when_loading_for_training(data_root, folder):
    bad = first_image(data_root, folder)
    bad.write_bytes(b"")
    load_market_layout(data_root)  # reading the folder alone does not open images
    with pytest.raises(DatasetError, match=rf"1 unreadable or corrupt image\(s\): .*{bad.name} \(empty file: 0 bytes\)"):
        load_data(unit_config(data_root))


def test_every_bad_image_is_counted_and_the_first_five_named(data_root):
    bad = sorted((data_root / "query").iterdir())[:7]
    for path in bad:
        path.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError) as error:
        load_data(unit_config(data_root))
    message = str(error.value)
    assert message.startswith("7 unreadable or corrupt image(s): ") and "(and 2 more)" in message
    assert all(path.name in message for path in bad[:5]) and "UnidentifiedImageError" in message
    assert "\n" not in message


def test_junk_images_are_never_read(data_root):
    first_image(data_root, "bounding_box_test", junk=True).write_bytes(b"")  # the loader drops id -1
    assert load_data(unit_config(data_root)).num_train_pids == 16


def test_an_image_damaged_after_a_clean_check_is_found_next_time(data_root):
    config = unit_config(data_root)
    load_data(config)
    bad = first_image(data_root, "query")
    bad.write_bytes(bad.read_bytes()[:10])  # another size: checked again, and its header is cut
    with pytest.raises(DatasetError, match=bad.name):
        load_data(config)


def test_a_decompression_bomb_is_one_line_naming_the_file(data_root):
    bad = first_image(data_root, "bounding_box_test")
    bad.write_bytes(png_header(20_000, 20_000))  # 400M pixels, over twice Pillow's default limit
    with pytest.raises(DatasetError, match=rf"{bad.name} \(too many pixels for Pillow's decompression-bomb"):
        load_data(unit_config(data_root))
    with pytest.raises(DatasetError, match=rf"cannot read image .*{bad.name}: DecompressionBombError"):
        decode_image(str(bad))


def test_full_decoding_finds_what_the_header_does_not(tmp_path):
    import numpy as np
    from PIL import Image

    path = tmp_path / "0001_c1s1_000001_01.jpg"
    noise = np.random.default_rng(0).integers(0, 256, size=(128, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])  # the header survives, the data is cut
    check_image_files([str(path)])
    with pytest.raises(DatasetError, match=rf"{path.name} \(OSError: image file is truncated"):
        check_image_files([str(path)], decode=True)


def test_symbolic_link_loops_and_broken_links_are_one_line_naming_them(data_root, tmp_path):
    loop = data_root / "query" / "0999_c1s1_000001_00.jpg"
    os.symlink(loop.name, loop)  # a file that points at itself
    with pytest.raises(DatasetError, match=rf"1 symbolic link loop\(s\) in the dataset: {loop}"):
        load_market_layout(data_root)
    loop.unlink()
    shutil.rmtree(data_root / "gt_bbox")
    os.symlink("gt_bbox", data_root / "gt_bbox")  # an optional folder: never taken for an absent one
    with pytest.raises(DatasetError, match=rf"symbolic link loop\(s\) in the dataset: {data_root / 'gt_bbox'}"):
        load_market_layout(data_root)
    (data_root / "gt_bbox").unlink()
    os.symlink("0998_c1s1_000001_00.jpg", data_root / "query" / "0997_c1s1_000001_00.jpg")  # to nothing
    with pytest.raises(DatasetError, match=r"1 broken symbolic link\(s\) in .*query: .*0997_c1s1_000001_00.jpg"):
        load_market_layout(data_root)
    root = tmp_path / "looped"
    os.symlink(root.name, root)
    with pytest.raises(DatasetError, match=rf"1 symbolic link loop\(s\) in the dataset: {root} "):
        load_market_layout(root)


def test_a_training_split_with_one_identity_is_refused(data_root):
    kept = keep_one_training_identity(data_root)
    assert load_market_layout(data_root).num_train_pids == 1  # a test split alone may still be scored
    with pytest.raises(DatasetError, match=rf"holds 1 identity \(id {kept}\); training needs at least 2"):
        load_data(unit_config(data_root))


@pytest.mark.parametrize("damage", ["zero-byte query image", "symbolic link loop", "one identity"])
def test_mmhpn_train_refuses_bad_data_in_one_line_and_writes_no_run_folder(data_root, tmp_path, capsys, damage):
    if damage == "zero-byte query image":
        first_image(data_root, "query").write_bytes(b"")
    elif damage == "symbolic link loop":
        os.symlink("0999_c1s1_000001_01.jpg", data_root / "bounding_box_train" / "0999_c1s1_000001_01.jpg")
    else:
        keep_one_training_identity(data_root)
    run_dir = tmp_path / "runs" / "bad-data"
    assert cli_main(["train", "--profile", "unit", "--data-root", str(data_root), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmhpn train: error: ") and "\n" not in err, err
    assert not run_dir.exists()


def test_first_few_names_five_and_counts_the_rest():
    assert first_few(["a", "b"]) == "a, b"
    assert first_few([str(k) for k in range(8)], separator="; ") == "0; 1; 2; 3; 4 (and 3 more)"
