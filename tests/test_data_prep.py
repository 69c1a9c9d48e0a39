"""data_prep.py: inspect finds exactly the planted problems, prepare's output trains and adds up, the viewer page
loads in headless Chromium, save round-trips through `datasets`, and the source folder is never touched."""

import csv
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

import data_prep
from conftest import TINY_ARGS, draw, make_folder
from hub_server import hub_env, hub_server  # noqa: F401  (fixtures: the loopback Hub)
from foldertune.inspection import analyse_dataset, phash


def png_header(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels with almost no data: a decompression bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def make_problem_dataset(root) -> set:
    """train/val/test with one of each problem; returns the expected problems as (kind, where) pairs, where is
    the sorted files of a file problem or 'split/label' of a folder problem."""
    make_folder(root / "train", {"ants": 6, "bees": 6, "cats": 6}, seed=1)
    make_folder(root / "val", {"ants": 2, "bees": 2, "cats": 2, "owls": 1}, seed=2)
    make_folder(root / "test", {}, flat=2, seed=3)
    tr, va = root / "train", root / "val"
    big = draw(0, 999, size=(64, 48))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    (tr / "ants" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tr / "ants" / "notimage.jpg").write_text("this is a text file, not a JPEG\n")
    (tr / "ants" / "empty.jpg").write_bytes(b"")
    draw(0, 501).convert("CMYK").save(tr / "ants" / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    draw(0, 502).save(tr / "ants" / "rotated.jpg", quality=95, exif=exif)
    (tr / "ants" / "notes.txt").write_text("not an image extension: ignored by training and by inspect\n")
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 65535, (32, 40), dtype=np.uint16)).save(tr / "bees" / "deep.png")  # I;16
    rgba = draw(1, 503).convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 255, (32, 40), dtype=np.uint8)))
    rgba.save(tr / "bees" / "rgba.png")
    draw(1, 504).quantize(64).save(tr / "bees" / "palette.png")
    draw(1, 505, size=(16, 12)).save(tr / "bees" / "tiny.png")
    (tr / "bees" / "bomb.png").write_bytes(png_header(40000, 40000))
    near = draw(2, 506)
    near.save(tr / "cats" / "near_a.png")
    near.resize((48, 38)).save(tr / "cats" / "near_b.png")  # resized copy: other bytes, same picture
    shutil.copy(tr / "cats" / "img_000.png", va / "cats" / "leak.png")  # leakage
    shutil.copy(tr / "ants" / "img_001.png", tr / "bees" / "confused.png")  # one picture, two labels
    shutil.copy(tr / "bees" / "img_002.png", tr / "bees" / "again.png")  # twice in one class
    (tr / "empty").mkdir()
    (tr / "empty" / "readme.md").write_text("no images here\n")
    return {
        ("truncated", ("train/ants/truncated.jpg",)), ("not_an_image", ("train/ants/notimage.jpg",)),
        ("zero_byte", ("train/ants/empty.jpg",)), ("cmyk", ("train/ants/cmyk.jpg",)),
        ("exif_rotated", ("train/ants/rotated.jpg",)), ("16bit", ("train/bees/deep.png",)),
        ("alpha", ("train/bees/rgba.png",)), ("palette", ("train/bees/palette.png",)),
        ("tiny", ("train/bees/tiny.png",)), ("decompression_bomb", ("train/bees/bomb.png",)),
        ("near_duplicate_within_class", ("train/cats/near_a.png", "train/cats/near_b.png")),
        ("duplicate_across_splits", ("train/cats/img_000.png", "val/cats/leak.png")),
        ("duplicate_across_classes", ("train/ants/img_001.png", "train/bees/confused.png")),
        ("duplicate_within_class", ("train/bees/again.png", "train/bees/img_002.png")),
        ("empty_class", "train/empty"), ("class_mismatch", "val"),  # owls: a class train lacks (error)
        ("class_mismatch", "val"),  # and 'empty' missing from val (warning)
    }


def found(report: dict) -> set:
    return {(p["kind"], tuple(sorted(p["files"])) if p["files"] else "/".join(filter(None, (p["split"], p["label"]))))
            for p in report["problems"]}


def tree_digest(root, *, times: bool = True) -> str:
    """Names, bytes and (times=True) modification times and modes of everything under root."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, root)}:{st.st_mtime_ns if times else ''}:{st.st_mode}".encode())
            if os.path.isfile(p):
                h.update(open(p, "rb").read())
    return h.hexdigest()


@pytest.fixture
def problem_dataset(tmp_path):
    src = tmp_path / "src"
    expected = make_problem_dataset(src)
    return src, expected


def test_inspect_finds_exactly_the_planted_problems(tmp_path, problem_dataset, capsys):
    src, expected = problem_dataset
    before = tree_digest(src)
    out = tmp_path / "report"
    assert data_prep.main(["inspect", str(src), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    report = json.loads((out / "inspection.json").read_text())
    assert found(report) == expected
    severities = {(p["kind"], p["severity"]) for p in report["problems"] if p["kind"] == "class_mismatch"}
    assert severities == {("class_mismatch", "error"), ("class_mismatch", "warning")}
    s = report["summary"]
    assert s["files"] == 42 and s["ignored_non_image_files"] == 2  # notes.txt, readme.md
    assert s["usable"] == 42 - 4  # truncated, not an image, zero bytes, bomb
    assert report["splits"]["train"]["classes"]["cats"]["usable"] == 8 and report["splits"]["test"]["files"] == 2
    rotated = next(r for r in report["files"] if r["rel"] == "train/ants/rotated.jpg")
    assert (rotated["width"], rotated["height"]) == (32, 40)  # as the loader sees it: EXIF rotation applied
    printed = capsys.readouterr().out
    assert "duplicate_across_splits" in printed and "val/cats/leak.png" in printed
    for name in ("index.html", "class_distribution.png"):
        assert (out / name).stat().st_size > 0
    # Re-running replaces the report (same problems, same thumbnails), and the source is untouched.
    thumbs = sorted(os.listdir(out / "thumbs"))
    data_prep.main(["inspect", str(src), "--out", str(out), "--workers", "1", "--no-progress"])
    assert found(json.loads((out / "inspection.json").read_text())) == expected
    assert sorted(os.listdir(out / "thumbs")) == thumbs
    assert tree_digest(src) == before
    assert data_prep.main(["inspect", str(src), "--out", str(src / "train" / "report")]) == 2  # never inside


def test_clean_dataset_shows_only_imbalance(tmp_path):
    make_folder(tmp_path / "d", {"many": 20, "few": 2}, seed=4)
    report = analyse_dataset(str(tmp_path / "d"), workers=1, progress=False)
    assert [(p["kind"], p["split"]) for p in report["problems"]] == [("imbalance", "train")]
    assert list(report["splits"]) == ["train"]  # a folder of class folders is one train split


def test_phash_matches_resized_copies_not_other_images():
    img = draw(2, 7)
    assert bin(phash(img) ^ phash(img.resize((80, 64)))).count("1") <= 2
    assert bin(phash(img) ^ phash(draw(2, 8))).count("1") > 12


def test_prepare_output_trains_and_adds_up(tmp_path, problem_dataset):
    from train_hf import main as train_main

    src, _ = problem_dataset
    before = tree_digest(src)
    out = tmp_path / "clean"
    assert data_prep.main(["prepare", str(src), str(out), "--workers", "2", "--no-progress"]) == 0
    summary = json.loads((out / "prepare.json").read_text())
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == summary["source_files"] == 42  # one row per source image file
    by_source = {r["source"]: r for r in rows}
    quarantined = {r["source"] for r in rows if r["action"] == "quarantined"}
    assert quarantined == {"train/ants/truncated.jpg", "train/ants/notimage.jpg", "train/ants/empty.jpg",
                           "train/bees/bomb.png", "train/ants/img_001.png", "train/bees/confused.png",
                           "val/owls/img_000.png"}
    assert {r["source"] for r in csv.DictReader(open(out / "quarantine.csv"))} == quarantined
    assert {r["source"] for r in rows if r["action"] == "dropped"} == {"val/cats/leak.png", "train/bees/img_002.png"}
    assert {r["source"] for r in rows if r["action"] == "re-encoded"} == {
        "train/ants/cmyk.jpg", "train/ants/rotated.jpg", "train/bees/deep.png", "train/bees/rgba.png",
        "train/bees/palette.png"}
    # Counts add up: every written file exists, nothing else does, and per-split counts match the folders.
    written = [r["dest"] for r in rows if r["dest"]]
    on_disk = sorted(os.path.relpath(os.path.join(d, f), out).replace(os.sep, "/")
                     for s in ("train", "val", "test") for d, _, fs in os.walk(out / s) for f in fs)
    assert sorted(written) == on_disk and summary["written"] == len(written) == 42 - 9
    assert sum(summary["actions"].values()) == 42
    assert summary["counts"]["train"] == {"ants": 7, "bees": 10, "cats": 8} and summary["counts"]["test"] == {"": 2}
    with Image.open(out / by_source["train/ants/rotated.jpg"]["dest"]) as im:
        assert im.size == (32, 40) and im.getexif().get(0x0112, 1) == 1  # rotation baked in
    with Image.open(out / "train/ants/cmyk.jpg") as im:
        assert im.mode == "RGB"
    # The output is clean: inspecting it finds only what prepare leaves alone (a tiny image, a near duplicate).
    again = analyse_dataset(str(out), workers=1, progress=False)
    assert {p["kind"] for p in again["problems"]} == {"tiny", "near_duplicate_within_class"}
    # Re-running gives the identical tree; the source never changes.
    digest = tree_digest(out, times=False)
    data_prep.main(["prepare", str(src), str(out), "--workers", "1", "--no-progress"])
    assert tree_digest(out, times=False) == digest
    assert tree_digest(src) == before
    # It trains.
    results = train_main(["--train_dir", str(out / "train"), "--validation_dir", str(out / "val"),
                          "--test_dir", str(out / "test"), "--output_dir", str(tmp_path / "run"),
                          "--num_train_epochs", "1", "--strict_images", "true"] + TINY_ARGS)
    assert results["eval_samples"] == 6 and (tmp_path / "run" / "predictions.csv").is_file()


def test_prepare_splits_links_crops_and_downscales(tmp_path):
    src = tmp_path / "flowers"
    make_folder(src, {"daisy": 20, "rose": 11, "tulip": 2}, size=(120, 80), seed=6)
    before = tree_digest(src)
    out = tmp_path / "out"
    data_prep.main(["prepare", str(src), str(out), "--link", "--val-fraction", "0.2", "--seed", "3",
                    "--no-progress"])
    summary = json.loads((out / "prepare.json").read_text())
    assert summary["counts"]["val"] == {"daisy": 4, "rose": 2, "tulip": 1}  # per class, at least one
    assert summary["counts"]["train"] == {"daisy": 16, "rose": 9, "tulip": 1}
    assert summary["actions"] == {"linked": 33}
    dest = next(out.glob("train/daisy/*.png"))
    assert os.stat(dest).st_ino == os.stat(src / "daisy" / dest.name).st_ino  # a hard link, no copy
    val_a = sorted(p.name for p in out.glob("val/*/*"))

    # Same seed, same split; border crop + max side re-encode every image.
    out2 = tmp_path / "out2"
    data_prep.main(["prepare", str(src), str(out2), "--crop", "0.1", "--max-side", "48", "--seed", "3",
                    "--val-fraction", "0.2", "--no-progress"])
    assert sorted(p.name for p in out2.glob("val/*/*")) == val_a
    with Image.open(next(out2.glob("train/daisy/*.png"))) as im:
        assert im.size == (48, 32)  # 120x80 -> crop 12/8 px per side -> 96x64 -> longer side 48
    assert tree_digest(src) == before
    assert data_prep.main(["prepare", str(src), str(tmp_path / "flowers" / "daisy")]) == 2
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "precious.txt").write_text("keep me")
    assert data_prep.main(["prepare", str(src), str(tmp_path / "occupied")]) == 2  # not ours: refused
    assert (tmp_path / "occupied" / "precious.txt").read_text() == "keep me"


def test_preview_aug_uses_the_recipe_train_transform(tmp_path, image_dataset):
    from foldertune.prep import build_train_transform

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    seed_cfg = os.path.join(root, "configs", "seed_resnet152.yaml")
    transform, _, _ = build_train_transform(seed_cfg, str(image_dataset / "train"),
                                            ["--model_name_or_path", "resnet152", "--pretrained", "false"])
    text = repr(transform.transforms)
    for part in ("Resize(size=[560, 560]", "CenterCrop(size=(512, 512))", "RandomRotation(degrees=[-20.0, 20.0]",
                 "RandomErasing(p=0.5"):
        assert part in text, part
    out = tmp_path / "aug.png"
    assert data_prep.main(["preview-aug", os.path.join(root, "configs", "demo.yaml"), str(image_dataset),
                           "--out", str(out), "--images", "3", "--versions", "4", "--", "--image_size", "48"]) == 0
    with Image.open(out) as im:
        assert im.width > 300 and im.height > 150


def test_preview_transform_is_the_one_train_hf_builds(tmp_path, image_dataset, monkeypatch):
    """Both call data.TrainPreset; a spy records the arguments and stops each run right there."""
    from foldertune import data
    from foldertune.prep import build_train_transform
    from train_hf import main as train_main

    calls = []

    class Stop(Exception):
        pass

    def spy(**kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(data, "TrainPreset", spy)
    cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "seed_resnet152.yaml")
    overrides = ["--model_name_or_path", "resnet152", "--pretrained", "false", "--rotation", "7"]
    with pytest.raises(Stop):
        train_main(["--config", cfg, "--train_dir", str(image_dataset / "train"), "--validation_dir",
                    str(image_dataset / "val"), "--output_dir", str(tmp_path / "run"), *overrides])
    with pytest.raises(Stop):
        build_train_transform(cfg, str(image_dataset / "train"), overrides)
    assert len(calls) == 2 and calls[0] == calls[1] and calls[0]["rotation"] == 7


def test_save_round_trip_with_datasets(tmp_path, image_dataset):
    import datasets

    src = tmp_path / "copy"
    shutil.copytree(image_dataset, src)
    before = tree_digest(src)
    out = tmp_path / "hf"
    assert data_prep.main(["save", str(src), str(out)]) == 0
    assert tree_digest(src) == before
    shutil.rmtree(src)  # the image bytes are inside the parquet files: the source is no longer needed
    ds = datasets.load_dataset(str(out))
    assert {s: len(d) for s, d in ds.items()} == {"train": 24, "validation": 7, "test": 5}
    assert ds["train"].features["label"].names == ["Dog", "cat", "emu"]  # train's names, sorted as strings
    assert isinstance(ds["train"].features["image"], datasets.Image)
    assert ds["validation"][0]["image"].size == (40, 32) and set(ds["test"]["label"]) == {-1}
    card = (out / "README.md").read_text()
    assert "| cat | 8 | 3 | 0 |" in card and "image-classification" in card
    assert sorted(os.listdir(out / "data")) == [f"{s}-00000-of-00001.parquet" for s in ("test", "train",
                                                                                          "validation")]


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install chromium); "
                                                 ".ci/run installs it, so CI runs this test")
def test_viewer_page_loads_in_headless_chromium(tmp_path, problem_dataset):
    src, _ = problem_dataset
    out = tmp_path / "report"
    data_prep.main(["inspect", str(src), "--out", str(out), "--workers", "2", "--no-progress"])
    profile = tmp_path / "chromium-profile"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=10000", "--dump-dom", (out / "index.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body))
    assert attrs.get("ready") == "1", body  # the page script ran to the end
    assert attrs["broken-images"] == "0" and int(attrs["images"]) > 20
    sections = set(re.findall(r'<section class="class" data-split="(\w+)" data-class="(\w*)"', dom))
    assert sections == {("train", c) for c in ("ants", "bees", "cats", "empty")} | {
        ("val", c) for c in ("ants", "bees", "cats", "owls")} | {("test", "")}
    assert 'id="broken" hidden' in dom and 'value="duplicate_across_splits"' in dom


def test_push_to_loopback_hub(tmp_path, image_dataset, hub_env, hub_server):
    """`push` in a fresh process against the loopback Hub (tests/hub_server.py): a private dataset repo with
    parquet shards holding the image bytes, a card with our counts and datasets' YAML, loadable with datasets."""
    import sys

    import pyarrow.parquet as pq

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "data_prep.py"), "push", str(image_dataset), "tester/colours",
           "--private"]
    run = subprocess.run(cmd, env=hub_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    repo = hub_server.repo("tester/colours", repo_type="dataset")
    assert repo.private
    files = repo.files()
    assert sorted(f for f in files if f.endswith(".parquet")) == [
        f"data/{s}-00000-of-00001.parquet" for s in ("test", "train", "validation")]
    table = pq.read_table(io.BytesIO(files["data/train-00000-of-00001.parquet"]))
    assert table.num_rows == 24 and all(img["bytes"] for img in table.column("image").to_pylist())
    card = files["README.md"].decode()
    assert "| cat | 8 | 3 | 0 |" in card and "dataset_info:" in card and "names:" in card  # ours + datasets' YAML
    assert hub_env["HF_TOKEN"] not in card and all(hub_env["HF_TOKEN"].encode() not in b for b in files.values())
    check = ("import datasets; d = datasets.load_dataset('tester/colours'); "
             "print({s: len(x) for s, x in d.items()}, d['train'].features['label'].names)")
    out = subprocess.run([sys.executable, "-c", check], env=hub_env, capture_output=True, text=True, timeout=300)
    assert "{'train': 24, 'validation': 7, 'test': 5} ['Dog', 'cat', 'emu']" in out.stdout, out.stderr[-3000:]


def test_prepare_downscales_jpegs_over_the_pixel_limit(tmp_path, monkeypatch):
    """A JPEG over the loader's limit is decoded at reduced scale when --max-side is given; other formats over it
    are quarantined. The limit is lowered for the test (workers=1: in-process) instead of writing 300 Mpx files."""
    from foldertune import data

    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 100 * 100)
    src = tmp_path / "src"
    make_folder(src, {"a": 3, "b": 3}, seed=8)
    draw(0, 77, size=(320, 160)).save(src / "a" / "huge.jpg", quality=95)
    draw(1, 78, size=(320, 160)).save(src / "b" / "huge.png")
    report = analyse_dataset(str(src), workers=1, progress=False)
    assert found(report) == {("decompression_bomb", ("a/huge.jpg",)), ("decompression_bomb", ("b/huge.png",))}
    out = tmp_path / "out"
    data_prep.main(["prepare", str(src), str(out), "--max-side", "32", "--workers", "1", "--no-progress"])
    rows = {r["source"]: r for r in csv.DictReader(open(out / "manifest.csv"))}
    assert rows["a/huge.jpg"]["action"] == "re-encoded" and "reduced scale" in rows["a/huge.jpg"]["details"]
    assert rows["b/huge.png"]["action"] == "quarantined"
    assert data.open_rgb(str(out / rows["a/huge.jpg"]["dest"])).size == (32, 16)  # the loader reads it now


def test_training_starts_from_the_saved_format(tmp_path):
    """`data_prep.py save` output trains directly (--dataset_name), labels and test rows as with folders."""
    import csv

    from conftest import TINY_ARGS
    from train_hf import main

    make_folder(tmp_path / "src" / "train", {"cat": 8, "Dog": 8}, seed=1)
    make_folder(tmp_path / "src" / "val", {"cat": 2, "Dog": 3}, seed=2)
    make_folder(tmp_path / "src" / "test", {}, flat=3, seed=3)
    assert data_prep.main(["save", str(tmp_path / "src"), str(tmp_path / "saved")]) == 0
    shutil.rmtree(tmp_path / "src")  # the images travel inside the parquet
    out = tmp_path / "run"
    results = main(["--dataset_name", str(tmp_path / "saved"), "--output_dir", str(out), "--num_train_epochs", "1"]
                   + TINY_ARGS)
    assert results["eval_samples"] == 5 and json.loads((out / "config.json").read_text())["label_names"] == ["Dog", "cat"]
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert sorted(r["file"] for r in rows) == [f"test/flat_{i:03d}.png" for i in range(3)]
    assert all(r["prediction"] in {"cat", "Dog"} for r in rows)


def test_capitalised_split_folders_are_still_checked(tmp_path):
    make_folder(tmp_path / "Train", {"a": 2, "b": 2}, seed=1)
    make_folder(tmp_path / "Val", {"a": 1, "b": 1, "zebra": 1}, seed=2)
    report = analyse_dataset(str(tmp_path), workers=1, progress=False)
    kinds = [p["kind"] for p in report["problems"]]
    assert "class_mismatch" in kinds
