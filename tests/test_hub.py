"""Publishing to the Hub against the loopback server (tests/hub_server.py): push, download, load three ways, fail well.

    .venv/bin/python -m pytest -q tests/test_hub.py
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from conftest import ROOT, TINY_ARGS, make_folder
from foldertune import hub
from foldertune.config import ConfigError
from hub_server import HubServer, hub_environment, hub_env, hub_server  # noqa: F401 (fixtures)
from train_hf import main

REPO = "tester/tiny-colours"
CLASSES = ["cat", "Dog", "emu"]
EXPECTED_FILES = {"model.safetensors", "config.json", "README.md", "run_config.yaml", "run_info.json",
                  "all_results.json", "train_results.json", "eval_results.json", "test_results.json",
                  "trainer_state.json"}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Train a tiny model with --push_to_hub to a module-wide loopback Hub; yields (server, output_dir, env)."""
    root = tmp_path_factory.mktemp("hubrun")
    make_folder(root / "colours" / "train", {c: 8 for c in CLASSES}, seed=1)
    make_folder(root / "colours" / "val", {c: 3 for c in CLASSES}, seed=2)
    make_folder(root / "colours" / "test", {"cat": 2, "emu": 2}, seed=3)
    out = root / "run"
    with HubServer() as server, pytest.MonkeyPatch.context() as mp:
        env = hub_environment(server, mp, str(root / "hub_cache"))
        main(["--train_dir", str(root / "colours" / "train"), "--validation_dir", str(root / "colours" / "val"),
              "--test_dir", str(root / "colours" / "test"), "--output_dir", str(out), "--num_train_epochs", "2",
              "--push_to_hub", "true", "--hub_model_id", REPO] + TINY_ARGS)
        yield server, out, env


def run_publish(env: dict, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "publish.py"), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_token_absent(folder, token: str) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            assert token.encode() not in p.read_bytes(), f"token written to {p}"


def test_push_to_hub_lands_our_repo_not_the_trainers(pushed):
    server, out, _ = pushed
    repo = server.repo(REPO)
    files = repo.files()
    assert EXPECTED_FILES <= set(files)
    report_files = {"report/metrics.json", "report/per_class.csv", "report/confusion_matrix.png", "report/curves.png"}
    assert report_files <= set(files)
    assert not any(p.startswith("checkpoint-") or p.endswith((".bin", ".npz", ".pt")) for p in files)  # no pickles
    for name in ("model.safetensors", "config.json", "README.md", "run_config.yaml"):
        assert files[name] == (out / name).read_bytes(), name  # exactly what is on disk, our card included
    assert "foldertune" in files["README.md"].decode()
    commits = repo.commits()
    assert len(commits) == 2 and commits[0].message == "Upload run (foldertune)"  # one upload commit + the initial
    assert_token_absent(out, server.token)


LOAD_CHECK = r"""
import json, sys, timm, torch
from huggingface_hub import hf_hub_download
from transformers import AutoModelForImageClassification, pipeline
repo, image = sys.argv[1], sys.argv[2]
x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
hf = AutoModelForImageClassification.from_pretrained(repo).eval()
t = timm.create_model("hf-hub:" + repo, pretrained=True).eval()
clf = pipeline("image-classification", model=repo, top_k=3)
with torch.no_grad():
    out = {"hf": hf(x).logits.tolist(), "timm": t(x).tolist(),
           "labels": [hf.config.id2label[i] for i in range(hf.config.num_labels)],
           "timm_labels": t.pretrained_cfg.get("label_names"), "timm_input": list(t.pretrained_cfg["input_size"]),
           "pipeline": clf(image), "pipeline_size": list(clf.image_processor.data_config["input_size"]),
           "safetensors": hf_hub_download(repo, "model.safetensors")}
print("RESULT" + json.dumps(out))
"""


def test_downloads_and_loads_with_pipeline_automodel_and_timm(pushed, tmp_path):
    server, out, env = pushed
    image = out.parent / "colours" / "val" / "emu" / "img_000.png"
    proc = subprocess.run([sys.executable, "-c", LOAD_CHECK, REPO, str(image)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert got["safetensors"].startswith(env["HF_HUB_CACHE"])  # really downloaded from the loopback Hub

    from transformers import AutoModelForImageClassification, pipeline

    local = AutoModelForImageClassification.from_pretrained(str(out)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = local(x).logits
    assert torch.allclose(torch.tensor(got["hf"]), ref, atol=1e-5)
    assert torch.allclose(torch.tensor(got["timm"]), ref, atol=1e-5)
    names = sorted(CLASSES)  # class ids follow the sorted folder names
    assert got["labels"] == names and got["timm_labels"] == names
    assert got["timm_input"] == [3, 32, 32] and got["pipeline_size"] == [3, 32, 32]  # serves at the trained size
    local_pipe = pipeline("image-classification", model=str(out), top_k=3)(str(image))
    assert [p["label"] for p in got["pipeline"]] == [p["label"] for p in local_pipe]
    assert got["pipeline"][0]["score"] == pytest.approx(local_pipe[0]["score"], abs=1e-5)


def test_card_front_matter_parses_and_holds_real_values(pushed):
    server, out, _ = pushed
    text = server.repo(REPO).files()["README.md"].decode()
    assert "{{" not in text and "}}" not in text
    card = ModelCard(text, ignore_metadata_errors=False)
    data = card.data.to_dict()
    assert data["library_name"] == "timm" and data["pipeline_tag"] == "image-classification"
    assert {"image-classification", "timm"} <= set(data["tags"]) and data["license"] == "unknown"
    results = json.loads((out / "all_results.json").read_text())
    index = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert index[("validation", "accuracy")] == pytest.approx(results["eval_accuracy"], abs=1e-4)
    assert index[("test", "f1_macro")] == pytest.approx(results["test_f1_macro"], abs=1e-4)
    body = card.text
    for expected in (f'pipeline("image-classification", model="{REPO}")', f'"hf-hub:{REPO}"',
                     "AutoModelForImageClassification.from_pretrained", "`Dog`, `cat`, `emu`",
                     "train 24 images, validation 9 images, test 4 images", "| Accuracy |",
                     "![Confusion matrix (validation)](report/confusion_matrix.png)", "Lowest-F1 classes",
                     "trained from scratch", "1 process on CPU", "adamw_torch lr 0.003"):
        assert expected in body, expected


def test_card_names_base_checkpoint_and_licence_and_degrades_without_report(pushed, tmp_path):
    import timm

    _, out, _ = pushed
    base = tmp_path / "base"  # a local checkpoint folder in timm's Hub layout, with a licence in its card
    timm.models._hub.save_for_hf(timm.create_model("test_resnet", pretrained=False), str(base),
                                 safe_serialization=True)
    cfg = json.loads((base / "config.json").read_text())
    cfg["pretrained_cfg"]["hf_hub_id"] = "timm/test_resnet.r160_in1k"
    (base / "config.json").write_text(json.dumps(cfg))
    (base / "README.md").write_text("---\nlicense: mit\nlibrary_name: timm\n---\n# base\n")
    run = tmp_path / "run"  # the same run without report/ and run_info.json, as if from an older version
    run.mkdir()
    for name in ("config.json", "all_results.json", "eval_results.json", "train_results.json"):
        shutil.copy(out / name, run / name)
    run_cfg = yaml.safe_load((out / "run_config.yaml").read_text())
    run_cfg.update(model_name_or_path=str(base), pretrained=True)
    (run / "run_config.yaml").write_text(yaml.safe_dump(run_cfg))

    text = hub.render_card(str(run), repo_id=REPO, dataset_id="tester/colours")
    assert "{{" not in text
    card = ModelCard(text, ignore_metadata_errors=False)
    assert card.data.base_model == "timm/test_resnet.r160_in1k" and card.data.license == "mit"
    assert card.data.datasets == ["tester/colours"]
    assert "fine-tuned from [timm/test_resnet.r160_in1k]" in card.text
    assert "(No plots: the run folder has no report/.)" in card.text and "| Accuracy |" in card.text
    assert "validation 9 images" in card.text  # from eval_samples when run_info.json is missing

    (run / "run_info.json").write_text(json.dumps({"resumed_from": "checkpoint-6", "world_size": 1}))
    text = hub.render_card(str(run), repo_id=REPO)  # the Trainer times only the session after a resume: say so
    assert "resumed from checkpoint-6" in text and "the time before resuming was not recorded" in text


def test_republish_is_idempotent_and_branch_and_private_work(pushed):
    server, out, env = pushed
    head = server.repo(REPO).branches["main"]
    proc = run_publish(env, out, "--repo_id", REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert server.repo(REPO).branches["main"] == head  # nothing changed: no new commit

    proc = run_publish(env, out, "--repo_id", "tiny-private", "--private", "--revision", "exp",
                       "--commit_message", "try a branch")
    assert proc.returncode == 0, proc.stderr[-2000:]
    repo = server.repo("tester/tiny-private")  # a bare name lands in the token owner's namespace
    assert repo.private and "model.safetensors" in repo.files("exp") and repo.files("main") == {}
    assert repo.commits("exp")[0].message == "try a branch"
    assert 'model="tester/tiny-private"' in repo.files("exp")["README.md"].decode()


@pytest.mark.parametrize("failure", ["401", "500", "timeout", "no_network"])
def test_failed_push_is_clear_retryable_and_leaves_the_run_intact(pushed, failure, tmp_path):
    server, out, env = pushed
    run = tmp_path / "run"  # a copy, so the other tests keep their folder
    shutil.copytree(out, run)
    (run / "README.md").unlink()
    before = digest(run)
    env = dict(env)
    repo_id = f"tester/fail-{failure}"
    with HubServer() as other:
        if failure == "401":
            env["HF_TOKEN"] = "hf_wrong_token"
        elif failure == "500":
            server.inject(r"POST /api/models/tester/fail-500/commit/", status=500)
        elif failure == "timeout":
            server.inject(r"POST /api/models/tester/fail-timeout/commit/", delay=5, status=504)  # never commits
        else:
            env["HF_ENDPOINT"] = other.endpoint
            other.stop()  # nothing listens there any more: connection refused
        try:
            proc = run_publish(env, run, "--repo_id", repo_id, "--timeout", "1")
        finally:
            server.clear_injections()
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    reason = {"401": "HTTP 401: the token was rejected", "500": "HTTP 500: Hub server error",
              "timeout": "within 1 s (timeout)", "no_network": "cannot reach"}[failure]
    assert message.startswith(f"error: push to {repo_id} failed: ") and reason in message, message
    assert message.endswith(f"push it later without retraining: python publish.py {run} --repo_id {repo_id}")
    after = digest(run)
    after.pop("README.md", None)  # the card is written before the upload (not at all when whoami fails)
    assert after == before  # everything else untouched
    for token in (server.token, "hf_wrong_token"):
        assert_token_absent(run, token)
        assert token not in proc.stdout + proc.stderr
    if failure != "401":
        repo = server.repo(repo_id)
        assert repo is None or repo.files() == {}  # nothing half-committed


def test_train_hf_push_failure_keeps_the_run_and_names_the_retry(tmp_path, image_dataset, hub_env, hub_server):
    hub_server.inject(r"/commit/", status=503)
    out = tmp_path / "run"
    with pytest.raises(hub.PublishError, match=re.escape(f"python publish.py {out} --repo_id tester/r --private")):
        main(["--train_dir", str(image_dataset / "train"), "--validation_dir", str(image_dataset / "val"),
              "--output_dir", str(out), "--num_train_epochs", "1", "--push_to_hub", "true",
              "--hub_model_id", "tester/r", "--hub_private_repo", "true"] + TINY_ARGS)
    for name in ("model.safetensors", "config.json", "run_config.yaml", "all_results.json", "run_info.json"):
        assert (out / name).is_file(), name
    assert hub_server.repo("tester/r").files() == {}
    assert yaml.safe_load((out / "run_config.yaml").read_text())["hub_model_id"] == "tester/r"
    assert_token_absent(out, hub_server.token)


def test_token_on_the_command_line_is_refused(tmp_path, image_dataset):
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        main(["--train_dir", str(image_dataset / "train"), "--output_dir", str(tmp_path / "run"),
              "--push_to_hub", "true", "--hub_token", "hf_secret"] + TINY_ARGS)
    assert not (tmp_path / "run").exists()


def test_publish_refuses_an_unfinished_run(tmp_path, hub_env):
    (tmp_path / "run").mkdir()
    proc = run_publish(hub_env, tmp_path / "run", "--repo_id", REPO)
    assert proc.returncode == 2 and "not a finished run (missing model.safetensors, config.json)" in proc.stderr


def test_loopback_hub_serves_dataset_repos(hub_env, hub_server, tmp_path):
    """The data issue's push (parquet through create_commit, repo_type=dataset) against the same fixture."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    buf = io.BytesIO()
    pq.write_table(pa.table({"label": ["cat", "emu"], "n": [1, 2]}), buf)
    api = HfApi()
    api.create_repo("tester/colours", repo_type="dataset", private=True)
    api.create_commit("tester/colours", repo_type="dataset", commit_message="data",
                      operations=[CommitOperationAdd("data/train-00000-of-00001.parquet", buf.getvalue()),
                                  CommitOperationAdd("README.md", b"---\nlicense: mit\n---\n# colours\n")])
    assert api.list_repo_files("tester/colours", repo_type="dataset") == ["README.md",
                                                                            "data/train-00000-of-00001.parquet"]
    path = hf_hub_download("tester/colours", "data/train-00000-of-00001.parquet", repo_type="dataset")
    assert pq.read_table(path).column("label").to_pylist() == ["cat", "emu"]
    assert hub_server.repo("tester/colours", repo_type="dataset").private


@pytest.mark.slow
def test_two_processes_push_once(tmp_path, image_dataset, hub_env, hub_server):
    """Under `accelerate launch` only the main process pushes, once, after every process is done."""
    from test_distributed import cpu_launch_config

    out = tmp_path / "run"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [accelerate, "launch", "--config_file", cpu_launch_config(tmp_path, 2), "--main_process_port", "29541",
           os.path.join(ROOT, "train_hf.py"), "--train_dir", str(image_dataset / "train"), "--validation_dir",
           str(image_dataset / "val"), "--output_dir", str(out), "--num_train_epochs", "1", "--use_cpu", "true",
           "--push_to_hub", "true", "--hub_model_id", "tester/ddp"] + TINY_ARGS
    proc = subprocess.run(cmd, cwd=ROOT, env=hub_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = [(method, path) for method, path, _ in hub_server.requests]
    assert calls.count(("POST", "/api/repos/create")) == 1
    assert calls.count(("POST", "/api/models/tester/ddp/commit/main")) == 1
    card = hub_server.repo("tester/ddp").files()["README.md"].decode()
    assert "2 processes on CPU" in card and "16 = 8 per device x 2 processes x 1 accumulation" in card
