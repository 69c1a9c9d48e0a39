import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from conftest import make_folder
from foldertune import data
from foldertune.config import ConfigError, parse_args


def test_label_names_survive_numeric_and_mixed_case_folders(tmp_path):
    names = [str(i) for i in range(13)] + ["Rose", "rose"]
    make_folder(tmp_path / "train", {n: 2 for n in names})
    make_folder(tmp_path / "val", {"10": 1, "2": 1, "Rose": 1})  # a subset, so its own ids differ from train's
    train = data.scan_folder(str(tmp_path / "train"), "train_dir")
    val = data.scan_folder(str(tmp_path / "val"), "validation_dir")
    class_names = data.check_layouts(train, val, None)
    assert class_names[:5] == ["0", "1", "10", "11", "12"]  # string order, as imagefolder sorts
    for layout in (train, val):
        ds = data.load_split(layout, class_names)
        assert ds.features["label"].names == class_names
        for item in ds:  # every example's label name equals its folder name
            folder = os.path.basename(os.path.dirname(item["image"]["path"]))
            assert class_names[item["label"]] == folder
    assert len(data.load_split(val, class_names)) == 3


def test_unlabeled_test_folder_keeps_paths_and_has_no_labels(tmp_path):
    make_folder(tmp_path / "test", {}, flat=4)
    layout = data.scan_folder(str(tmp_path / "test"), "test_dir")
    ds = data.load_split(layout, ["a", "b"])
    assert "label" not in ds.features and len(ds) == 4
    assert sorted(os.path.basename(p) for p in data.image_paths(ds)) == [f"flat_{i:03d}.png" for i in range(4)]


@pytest.mark.parametrize("setup,role,match", [
    (lambda p: None, "train_dir", "does not exist"),
    (lambda p: os.makedirs(p), "train_dir", "has no images"),
    (lambda p: (make_folder(p, {"a": 2}), os.makedirs(os.path.join(p, "empty"))), "train_dir", "'empty' has no images"),
    (lambda p: make_folder(p, {"a": 2}, flat=1), "test_dir", "mixes images at the top"),
    (lambda p: (make_folder(p, {"a": 1}), make_folder(os.path.join(p, "a", "deeper"), {}, flat=1)), "train_dir",
     "has sub-folders"),
])
def test_bad_layouts_fail_with_one_line(tmp_path, setup, role, match):
    root = str(tmp_path / "d")
    setup(root)
    with pytest.raises(ConfigError, match=match) as e:
        data.scan_folder(root, role)
    assert "\n" not in str(e.value)


def test_split_class_mismatches(tmp_path):
    train = data.scan_folder(make_folder(tmp_path / "train", {"a": 2, "b": 2}), "train_dir")
    val = data.scan_folder(make_folder(tmp_path / "val", {"a": 1, "zebra": 1}), "validation_dir")
    with pytest.raises(ConfigError, match=r"classes that train_dir does not: \['zebra'\]"):
        data.check_layouts(train, val, None)
    flat = data.scan_folder(make_folder(tmp_path / "flat", {}, flat=2), "train_dir")
    with pytest.raises(ConfigError, match="needs one sub-folder per class"):
        data.check_layouts(flat, None, None)
    one = data.scan_folder(make_folder(tmp_path / "one", {"a": 2}), "train_dir")
    with pytest.raises(ConfigError, match="at least 2"):
        data.check_layouts(one, None, None)


def test_stratified_split_keeps_every_class(tmp_path):
    layout = data.scan_folder(make_folder(tmp_path / "train", {"a": 10, "b": 10, "c": 20}), "train_dir")
    ds = data.load_split(layout, ["a", "b", "c"])
    tr, va = data.split_train(ds, 0.25, seed=0)
    assert len(tr) + len(va) == 40
    assert len(va) == 10 and np.bincount(va["label"]).tolist()[2] == 5  # the big class keeps its 50 %
    assert set(va["label"]) == {0, 1, 2}
    tr2, va2 = data.split_train(ds, 0.25, seed=0)
    assert va2["image"] == va["image"]  # seeded: the same split every time


def seed_preset():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d, _, _ = parse_args(["--config", os.path.join(root, "configs", "seed_resnet152.yaml"), "--train_dir", "t",
                          "--output_dir", "o"])
    imagenet = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "interpolation": "bilinear",
                "crop_pct": 0.875, "input_size": (3, 224, 224)}  # what timm/resnet152.tv2_in1k's config says
    train, evaluation, dcfg = data.build_presets(d, imagenet)
    assert dcfg["crop_pct"] == 1.0 and dcfg["crop_mode"] == "squash" and dcfg["eval_size"] == 512
    return d, train


def test_seed_recipe_has_every_op_in_order():
    d, preset = seed_preset()
    ops = [type(t) for t in preset.transforms.transforms]
    assert ops == [v2.Resize, v2.CenterCrop, v2.RandomHorizontalFlip, v2.ColorJitter, v2.RandomAffine,
                   v2.RandomRotation, v2.ToImage, v2.ToDtype, v2.Normalize, v2.RandomErasing]
    resize, crop = preset.transforms.transforms[0:2]
    assert list(resize.size) == [560, 560] and list(crop.size) == [512, 512]
    assert preset.transforms.transforms[5].degrees == [-20.0, 20.0]
    assert preset.transforms.transforms[5].interpolation == v2.InterpolationMode.NEAREST  # torchvision's default
    assert preset.transforms.transforms[-1].p == 0.5


def test_presets_give_float_tensors_of_the_right_shape():
    _, preset = seed_preset()
    out = preset(Image.new("RGB", (640, 480), (200, 10, 10)))
    assert out.shape == (3, 512, 512) and out.dtype == torch.float32
    rrc = data.TrainPreset(size=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert rrc(Image.new("RGB", (100, 50))).shape == (3, 64, 64)
    ev = data.EvalPreset(size=48, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", crop_pct=1.0,
                         crop_mode="squash")
    x = ev(Image.new("RGB", (100, 50), (255, 255, 255)))
    assert x.shape == (3, 48, 48) and torch.allclose(x, torch.ones_like(x))  # white -> (1 - 0.5) / 0.5


def test_open_rgb_handles_modes(tmp_path):
    cases = {
        "l.png": Image.new("L", (8, 8), 128),
        "rgba.png": Image.new("RGBA", (8, 8), (255, 0, 0, 0)),  # fully transparent -> white background
        "p.gif": Image.new("P", (8, 8), 3),
        "cmyk.jpg": Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
        "i16.png": Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = data.open_rgb(str(tmp_path / name))
        assert out.mode == "RGB" and out.size == (8, 8), name
    assert data.open_rgb(str(tmp_path / "rgba.png")).getpixel((0, 0)) == (255, 255, 255)
    assert data.open_rgb(str(tmp_path / "i16.png")).getpixel((0, 0))[0] >= 254  # 16-bit white stays white


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert data.open_rgb(str(tmp_path / "rot.jpg")).size == (10, 20)


def test_batch_transform_skips_or_raises_on_corrupt_files(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    batch = {"image": [{"path": str(good)}, {"path": str(bad)}], "label": [0, 1]}
    ev = data.EvalPreset(size=8, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear", crop_pct=1.0,
                         crop_mode="squash")
    def rows(out):
        return [dict(zip(out, values)) for values in zip(*out.values())]

    train = data.collate(rows(data.BatchTransform(ev, strict=False, drop=True)(batch)))
    assert train["pixel_values"].shape == (1, 3, 8, 8) and train["labels"].tolist() == [0]
    assert train["bad_images"] == [str(bad)]
    evaluation = data.collate(rows(data.BatchTransform(ev, strict=False, drop=False, fill_size=8)(batch)))
    assert evaluation["pixel_values"].shape == (2, 3, 8, 8) and evaluation["labels"].tolist() == [0, 1]
    with pytest.raises(RuntimeError, match="bad.jpg.*strict_images"):
        data.BatchTransform(ev, strict=True, drop=True)(batch)


def test_jpeg_draft_decodes_smaller_but_never_below_the_target(tmp_path):
    p = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1500), (30, 120, 200)).save(p)
    assert data.open_rgb(str(p)).size == (2000, 1500)
    small = data.open_rgb(str(p), draft_size=400)
    assert small.size == (1000, 750)  # 1/2 scale: 1/4 would give 375 px, below the 400 asked for
    Image.new("RGB", (2000, 1500)).save(tmp_path / "big.png")  # not a JPEG: draft does not apply
    assert data.open_rgb(str(tmp_path / "big.png"), draft_size=400).size == (2000, 1500)
    rrc = data.TrainPreset(size=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert rrc.draft_size == 915  # 224 / sqrt(0.08 * 3/4)
    seed = data.TrainPreset(size=512, mean=(0.5,) * 3, std=(0.5,) * 3, crop="center", resize=(560, 560))
    assert seed.draft_size == 560
    assert data.TrainPreset(size=512, mean=(0.5,) * 3, std=(0.5,) * 3, crop="center").draft_size is None


def test_file_and_class_names_that_look_like_splits_are_just_names(tmp_path):
    # imagefolder guesses splits from names when given a data_dir; we hand it the scanned files instead.
    for c in ("cat", "test", "val"):
        make_folder(tmp_path / "train" / c, {}, flat=0)
        for name in ("test_2.jpg", "ILSVRC2012_val_0003.JPEG", "train_shot.jpg", "x.jpg"):
            Image.new("RGB", (8, 8)).save(tmp_path / "train" / c / name)
    layout = data.scan_folder(str(tmp_path / "train"), "train_dir")
    names = data.check_layouts(layout, None, None)
    ds = data.load_split(layout, names)
    assert names == ["cat", "test", "val"] and len(ds) == 12
    assert np.bincount(ds["label"]).tolist() == [4, 4, 4]
