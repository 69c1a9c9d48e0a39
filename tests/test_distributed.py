"""The real script under `accelerate launch` with 2 CPU processes (DDP over gloo)."""

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, TINY_ARGS, make_folder

pytestmark = pytest.mark.slow


def cpu_launch_config(tmp_path, nproc=2):
    """The shipped accelerate_config.yaml with CPU overrides: MULTI_GPU + use_cpu gives N real processes over gloo
    (`--cpu --num_processes N` on the command line silently runs one)."""
    cfg = yaml.safe_load(open(os.path.join(ROOT, "accelerate_config.yaml")))
    cfg.update(use_cpu=True, num_processes=nproc, mixed_precision="no", gpu_ids=None)
    path = tmp_path / "accelerate_cpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def launch(tmp_path, args, nproc=2, timeout=600, port=29533):
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [accelerate, "launch", "--config_file", cpu_launch_config(tmp_path, nproc), "--main_process_port",
           str(port), os.path.join(ROOT, "train_hf.py")] + args
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_two_processes_count_each_image_once(tmp_path):
    make_folder(tmp_path / "train", {"a": 9, "b": 8, "c": 8}, seed=1)
    make_folder(tmp_path / "val", {"a": 3, "b": 2, "c": 2}, seed=2)  # 7: odd, so a naive gather would pad
    make_folder(tmp_path / "test", {}, flat=5, seed=3)
    out = tmp_path / "run"
    proc = launch(tmp_path, ["--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val"),
                   "--test_dir", str(tmp_path / "test"), "--output_dir", str(out), "--num_train_epochs", "2"]
                  + TINY_ARGS + ["--use_cpu", "true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_samples"] == 7
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert sorted(r["file"] for r in rows) == [f"flat_{i:03d}.png" for i in range(5)]
    state = json.loads((out / "trainer_state.json").read_text())
    # 25 images -> 3 full batches of 8 -> one round over 2 processes per epoch (incomplete rounds dropped)
    assert state["train_batch_size"] == 8 and state["global_step"] == 2
    assert "2 processes, global batch 16" in proc.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only guard")
def test_cpu_processes_without_use_cpu_fail_clearly(monkeypatch):
    from foldertune.config import ConfigError, parse_args

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--use_cpu true"):
        parse_args(["--train_dir", "t", "--output_dir", "o"])
