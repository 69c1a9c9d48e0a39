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
    # The evaluation report, written once by the main process from the gathered predictions
    report = json.loads((out / "report" / "metrics.json").read_text())["splits"]["validation"]
    assert report["num_images"] == 7 and report["accuracy"] == results["eval_accuracy"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only guard")
def test_cpu_processes_without_use_cpu_fail_clearly(monkeypatch):
    from foldertune.config import ConfigError, parse_args

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--use_cpu true"):
        parse_args(["--train_dir", "t", "--output_dir", "o"])


def tiny_run_args(tmp_path, out):
    make_folder(tmp_path / "train", {"a": 9, "b": 8, "c": 8}, seed=1)
    make_folder(tmp_path / "val", {"a": 3, "b": 2, "c": 2}, seed=2)
    return (["--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val"), "--output_dir",
             str(out), "--num_train_epochs", "2", "--per_device_train_batch_size", "4"] + TINY_ARGS[2:] +
            ["--model_name_or_path", "test_resnet", "--use_cpu", "true"])


def test_two_nodes_over_loopback_agree_with_one_node(tmp_path):
    """--num_machines 2 --machine_rank 0/1 --main_process_ip 127.0.0.1, one process each: a real 2-node
    rendezvous. Same world size and seed as a 2-process single-node run, so the metrics must be identical."""
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    config = cpu_launch_config(tmp_path, nproc=2)
    args = tiny_run_args(tmp_path, tmp_path / "two_nodes")
    ranks = [subprocess.Popen(
        [accelerate, "launch", "--config_file", config, "--num_machines", "2", "--machine_rank", str(rank),
         "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", "29544",
         os.path.join(ROOT, "train_hf.py")] + args,
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = [p.communicate(timeout=600) for p in ranks]
    assert all(p.returncode == 0 for p in ranks), outs[0][1][-2000:] + outs[1][1][-2000:]
    one_node = launch(tmp_path, tiny_run_args(tmp_path, tmp_path / "one_node"), port=29545)
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    a = json.loads((tmp_path / "two_nodes" / "all_results.json").read_text())
    b = json.loads((tmp_path / "one_node" / "all_results.json").read_text())
    assert a["eval_samples"] == b["eval_samples"] == 7
    assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-5) and a["eval_accuracy"] == b["eval_accuracy"]


def test_sigterm_under_two_processes_saves_once_and_exits_zero(tmp_path):
    import signal
    import time

    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    out = tmp_path / "run"
    args = tiny_run_args(tmp_path, out)
    args[args.index("--num_train_epochs") + 1] = "200"
    args += ["--save_strategy", "steps", "--save_steps", "3", "--eval_strategy", "no", "--load_best_model_at_end",
             "false", "--logging_strategy", "steps", "--logging_steps", "1"]
    proc = subprocess.Popen([accelerate, "launch", "--config_file", cpu_launch_config(tmp_path), "--main_process_port",
                             "29546", os.path.join(ROOT, "train_hf.py")] + args,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (out / "checkpoint-3" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() - t0 < 300, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    # What SLURM does on preemption: SIGTERM to every task (the two training processes), not to the launcher.
    workers = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "train_hf.py"], capture_output=True, text=True)
    pids = [int(p) for p in workers.stdout.split()]
    assert len(pids) == 2, workers
    os.kill(pids[0], signal.SIGTERM)  # one rank only: the other must learn it through the all-reduce
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert err.count("stopped by SIGTERM at step") == 2  # both ranks stopped at the same step
    steps = {line.split("stopped by SIGTERM at step ")[1].split(";")[0] for line in err.splitlines()
             if "stopped by SIGTERM at step" in line}
    assert len(steps) == 1
    assert (out / f"checkpoint-{steps.pop()}" / "trainer_state.json").is_file()
