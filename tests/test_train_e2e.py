"""End to end: main([...]) in-process on generated folders with a tiny random-init timm model."""

import csv
import json
import os

import pytest
import yaml
from transformers import pipeline

from conftest import TINY_ARGS, make_folder
from train_hf import main


def run(tmp_path, ds_root, *extra):
    out = tmp_path / "run"
    argv = ["--train_dir", str(ds_root / "train"), "--validation_dir", str(ds_root / "val"),
            "--test_dir", str(ds_root / "test"), "--output_dir", str(out), "--num_train_epochs", "3"]
    return out, main(argv + TINY_ARGS + list(extra))


def test_main_writes_every_output(tmp_path, image_dataset):
    out, results = run(tmp_path, image_dataset, "--lr_schedule", "cosine", "--t_max_epochs", "2")
    for name in ("model.safetensors", "config.json", "run_config.yaml", "all_results.json", "eval_results.json",
                 "train_results.json", "trainer_state.json", "predictions.csv"):
        assert (out / name).is_file(), name
    all_results = json.loads((out / "all_results.json").read_text())
    assert all_results["eval_samples"] == 7  # every validation image exactly once
    assert 0.0 <= all_results["eval_accuracy"] <= 1.0 and "eval_f1_macro" in all_results
    cfg = yaml.safe_load((out / "run_config.yaml").read_text())
    assert cfg["model_name_or_path"] == "test_resnet" and cfg["num_train_epochs"] == 3

    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert sorted(r["file"] for r in rows) == [f"flat_{i:03d}.png" for i in range(5)]
    assert all(r["prediction"] in {"cat", "Dog", "emu"} and r["prediction"] == r["top1_label"] for r in rows)
    assert all(abs(sum(float(r[f"top{k}_prob"]) for k in (1, 2, 3)) - 1) < 1e-4 for r in rows)

    # Per-epoch cosine with T_max=2 over 3 epochs: the LR used in epochs 1, 2, 3 is 0.003, 0.0015, 0.0.
    state = json.loads((out / "trainer_state.json").read_text())
    train_logs = [h for h in state["log_history"] if "loss" in h]
    assert len(train_logs) == 3 and all(0 <= h["train_accuracy"] <= 1 for h in train_logs)
    lrs = [h["learning_rate"] for h in train_logs]  # the LR of each epoch's last step
    assert lrs == pytest.approx([0.003, 0.0015, 0.0], abs=1e-12)

    clf = pipeline("image-classification", model=str(out))
    assert clf(str(image_dataset / "test" / "flat_000.png"))[0]["label"] in {"cat", "Dog", "emu"}


def test_labeled_test_folder_gets_metrics_and_learns(tmp_path):
    classes = {"a": 12, "b": 12, "c": 12}
    make_folder(tmp_path / "d" / "train", classes, seed=1)
    make_folder(tmp_path / "d" / "val", {"a": 3, "b": 3, "c": 3}, seed=2)
    make_folder(tmp_path / "d" / "test", {"a": 2, "c": 3}, seed=3)  # labeled, a subset of classes
    out, results = run(tmp_path, tmp_path / "d", "--num_train_epochs", "6", "--lr_schedule", "constant")
    assert results["test_samples"] == 5 and results["eval_accuracy"] >= 0.66  # colours are easy to learn
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["label"] for r in sorted(rows, key=lambda r: r["file"])] == ["a", "a", "c", "c", "c"]


def test_without_validation_dir_splits_train(tmp_path, image_dataset):
    out = tmp_path / "run"
    results = main(["--train_dir", str(image_dataset / "train"), "--output_dir", str(out), "--num_train_epochs", "1",
                    "--validation_split", "0.25"] + TINY_ARGS)
    assert results["eval_samples"] == 6  # 25 % of 24, stratified


def test_rerun_resumes_from_last_checkpoint(tmp_path, image_dataset):
    out, _ = run(tmp_path, image_dataset, "--num_train_epochs", "1")
    out, results = run(tmp_path, image_dataset, "--num_train_epochs", "2")  # same output_dir, one more epoch
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and len([h for h in state["log_history"] if "loss" in h]) == 2
    trained = json.loads((out / "train_results.json").read_text())
    out, again = run(tmp_path, image_dataset, "--num_train_epochs", "2")  # finished already: nothing to train
    assert json.loads((out / "train_results.json").read_text()) == trained  # real metrics kept, not zeros
    assert again["train_loss"] == trained["train_loss"] > 0


def test_bad_input_fails_before_model_is_built(tmp_path, image_dataset, monkeypatch):
    import foldertune.model as modeling
    from foldertune.config import ConfigError

    monkeypatch.setattr(modeling, "build_model", lambda *a, **k: pytest.fail("model built despite bad input"))
    make_folder(tmp_path / "val2", {"cat": 1, "wolf": 1})
    with pytest.raises(ConfigError, match="wolf"):
        run(tmp_path, image_dataset, "--validation_dir", str(tmp_path / "val2"))
    with pytest.raises(ConfigError, match="cannot load checkpoint 'timm/resnet152.tv2_in1k'"):
        run(tmp_path, image_dataset, "--model_name_or_path", "timm/resnet152.tv2_in1k", "--pretrained", "true")
