"""Nothing lost: bad images mid-run, bad configs, kill -9 and resume, SIGTERM, determinism, per-rank augmentation."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, TINY_ARGS, make_folder
from foldertune import data
from foldertune.config import ConfigError
from train_hf import main


def base_argv(root, out, *extra):
    return (["--train_dir", str(root / "train"), "--validation_dir", str(root / "val"), "--output_dir", str(out),
             "--num_train_epochs", "1"] + TINY_ARGS + list(extra))


@pytest.fixture
def folders(tmp_path):
    make_folder(tmp_path / "train", {"a": 8, "b": 8}, seed=1)
    make_folder(tmp_path / "val", {"a": 3, "b": 2}, seed=2)
    make_folder(tmp_path / "test", {}, flat=3, seed=3)
    return tmp_path


# ---------------------------------------------------------------------------------------------------------------
# Bad image files: each is skipped and counted (training) or kept as an empty-prediction row (test), or fails
# fast with strict_images. Odd-but-valid images (CMYK, 16-bit, alpha, palette, EXIF-rotated) train normally.

def write_bad_files(train_a, test):
    good = train_a / "img_000.png"
    truncated = train_a / "truncated.jpg"
    Image.open(good).convert("RGB").save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:200])
    (train_a / "text.jpg").write_text("this is not a jpeg")
    (train_a / "empty.png").write_bytes(b"")
    (test / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    # valid oddities: must NOT be reported
    Image.new("CMYK", (40, 32), (0, 255, 255, 0)).save(train_a / "cmyk.jpg")
    Image.fromarray(np.full((32, 40), 40000, dtype=np.uint16)).save(train_a / "deep16.png")
    Image.new("RGBA", (40, 32), (255, 0, 0, 128)).save(train_a / "alpha.png")
    Image.new("P", (40, 32), 5).save(train_a / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 32), (200, 30, 30)).save(train_a / "rotated.jpg", exif=exif)
    return {str(truncated), str(train_a / "text.jpg"), str(train_a / "empty.png"), str(test / "broken.jpg")}


def test_bad_images_are_skipped_counted_and_listed(tmp_path, folders):
    bad = write_bad_files(folders / "train" / "a", folders / "test")
    out = tmp_path / "run"
    results = main(base_argv(folders, out, "--test_dir", str(folders / "test"), "--per_device_train_batch_size", "4"))
    listed = set((out / "bad_images.txt").read_text().split())
    assert listed == bad and results["unreadable_images"] == 4
    rows = {r["file"]: r for r in csv.DictReader(open(out / "predictions.csv"))}
    assert len(rows) == 4 and rows["broken.jpg"]["prediction"] == ""  # still one row per test file
    assert all(rows[f"flat_{i:03d}.png"]["prediction"] in {"a", "b"} for i in range(3))


def test_strict_images_fails_fast_naming_the_file(tmp_path, folders):
    (folders / "train" / "a" / "text.jpg").write_text("not an image")
    with pytest.raises(RuntimeError, match=r"text\.jpg.*strict_images"):
        main(base_argv(folders, tmp_path / "run", "--strict_images", "true", "--per_device_train_batch_size", "16"))


def test_truncated_jpeg_is_bad_unless_allowed(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p, quality=95)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(OSError, match="truncated"):
        data.open_rgb(str(p))
    assert data.open_rgb(str(p), allow_truncated=True).size == (64, 64)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 30 * 30)
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    with pytest.raises(Image.DecompressionBombError, match="decompression bomb"):
        data.open_rgb(str(tmp_path / "big.png"))


# ---------------------------------------------------------------------------------------------------------------
# Bad configs and folders: one clear line, raised before the model is built.

BAD_INPUTS = [
    (["--learning_rate", "fast"], "invalid float value: 'fast'"),
    (["--no_such_option", "1"], "not used by the HfArgumentParser"),
    (["--optim", "sgd"], "momentum 0"),
    (["--lr_schedule", "plateau", "--eval_strategy", "no", "--load_best_model_at_end", "false"], "plateau"),
    (["--hub_token", "hf_abc"], "HF_TOKEN"),
    (["--per_device_train_batch_size", "64"], "fewer than one batch"),
    (["--validation_dir", "{root}/nowhere"], "does not exist"),
    (["--validation_dir", "{root}/val_extra"], "classes that train_dir does not: \\['zebra'\\]"),
    (["--test_dir", "{root}/test_mixed"], "mixes images at the top"),
    (["--train_dir", "{root}/train_empty_class"], "'b' has no images"),
    (["--model_name_or_path", "timm/resnet152.tv2_in1k", "--pretrained", "true"], "hf download"),
    (["--color_jitter", "0.4"], "color_jitter needs 4"),
    (["--drop_rate", "1.5"], "drop_rate"),
    (["--top_k", "0"], "top_k must be >= 1"),
    (["--validation_dir", "", "--validation_split", "0.05"], "cannot hold out validation_split=0.05"),
]


@pytest.mark.parametrize("extra,message", BAD_INPUTS)
def test_bad_input_matrix(tmp_path, folders, monkeypatch, extra, message):
    import foldertune.model as modeling

    make_folder(folders / "val_extra", {"a": 1, "zebra": 1})
    make_folder(folders / "test_mixed", {"a": 1}, flat=1)
    make_folder(folders / "train_empty_class", {"a": 2})
    os.makedirs(folders / "train_empty_class" / "b", exist_ok=True)
    real_build = modeling.build_model
    monkeypatch.setattr(modeling, "build_model", lambda *a, **k: pytest.fail("model built before the error"))
    extra = [e.replace("{root}", str(folders)) for e in extra]
    with pytest.raises(ConfigError, match=message) as e:
        main(base_argv(folders, tmp_path / "run") + extra)
    assert "\n" not in str(e.value)
    assert real_build is not None


# ---------------------------------------------------------------------------------------------------------------
# Determinism and per-rank augmentation

def test_same_seed_same_metrics(tmp_path, folders):
    a = main(base_argv(folders, tmp_path / "a", "--num_train_epochs", "2"))
    b = main(base_argv(folders, tmp_path / "b", "--num_train_epochs", "2"))
    keys = [k for k in a if k.startswith("eval_") and "runtime" not in k and "per_second" not in k]
    assert keys and all(a[k] == b[k] for k in keys)
    from safetensors.torch import load_file

    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_rank_seed_differs_per_process_and_repeats():
    from types import SimpleNamespace

    from foldertune.trainer import RankSeedCallback

    def draw(rank):
        RankSeedCallback().on_train_begin(SimpleNamespace(world_size=2, seed=7, process_index=rank), None, None)
        return torch.rand(4)

    assert not torch.equal(draw(0), draw(1)) and torch.equal(draw(1), draw(1))


# ---------------------------------------------------------------------------------------------------------------
# Real subprocesses: kill -9 and resume, SIGTERM

def script_cmd(root, out, epochs, every=2):
    return [sys.executable, os.path.join(ROOT, "train_hf.py")] + base_argv(root, out) + [
        "--num_train_epochs", str(epochs), "--save_strategy", "steps", "--save_steps", str(every), "--eval_strategy",
        "steps", "--eval_steps", str(every), "--logging_strategy", "steps", "--logging_steps", "1"]


def wait_for(path, proc, timeout=120):
    t0 = time.time()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def final_state(out):
    return json.loads((out / "trainer_state.json").read_text())


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_and_finishes(tmp_path, folders):
    out = tmp_path / "run"
    cmd = script_cmd(folders, out, epochs=20, every=4)  # 16 images / batch 8 = 2 steps per epoch -> 40 steps
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "checkpoint-4" / "trainer_state.json", proc)
    time.sleep(0.2)  # somewhere in the next steps, possibly mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = max(int(n.split("-")[1]) for n in os.listdir(out) if n.startswith("checkpoint-"))
    assert done < 36, "the run finished before the kill; the test did not test anything"
    # A checkpoint cut short while saving: weights there, trainer_state.json not yet.
    partial = out / "checkpoint-39"
    partial.mkdir(exist_ok=True)
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "ignoring incomplete checkpoint" in rerun.stderr and "resuming from" in rerun.stderr
    state = final_state(out)
    assert state["global_step"] == 40 and (out / "model.safetensors").is_file()
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps[-1] == 40 and len(set(steps)) == len(steps)  # no step trained twice in the kept history


@pytest.mark.slow
def test_sigterm_saves_and_exits_zero_then_resumes(tmp_path, folders):
    out = tmp_path / "run"
    cmd = script_cmd(folders, out, epochs=50)  # 100 steps: far from done when the signal comes
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "checkpoint-2" / "trainer_state.json", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped by SIGTERM at step" in err and "Run the same command again to resume" in err
    stopped = int(err.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert (out / f"checkpoint-{stopped}" / "trainer_state.json").is_file() and stopped < 100
    assert not (out / "model.safetensors").exists()  # no final model from an interrupted run
    rerun = subprocess.run(script_cmd(folders, out, epochs=3), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {out}/checkpoint-{stopped}" in rerun.stderr
