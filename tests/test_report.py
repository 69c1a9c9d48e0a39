"""Evaluation report: numbers against scikit-learn, every file written, PNGs valid, the scripts' entry points."""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

import evaluate_model
from conftest import ROOT, TINY_ARGS, make_folder
from foldertune import report
from foldertune.config import ConfigError
from train_hf import main as train_main

SPLIT_FILES = ("per_class.csv", "confusions.csv", "confusion_matrix.csv", "confusion_matrix.png", "misclassified.png",
               "worst_classes.png", "predictions_validation.npz")


def fake_predictions(tmp_path, num_classes=6, per_class=(5, 3, 4, 0, 6, 2), seed=0):
    """Logits that are right about 60 % of the time; class 3 absent (support 0), as in a small validation set."""
    names = [f"class {chr(97 + i)}" for i in range(num_classes)]
    make_folder(tmp_path / "imgs", {n: max(c, 1) for n, c in zip(names, per_class)})
    labels = np.repeat(np.arange(num_classes), per_class)
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), num_classes)).astype(np.float32)
    logits[np.arange(len(labels)), labels] += 1.5
    paths = [str(tmp_path / "imgs" / names[c] / f"img_{i:03d}.png") for c in range(num_classes)
             for i in range(per_class[c])]
    return report.SplitPredictions(logits=logits, labels=labels, paths=paths), names


def history(epochs=3, with_eval=True):
    out = []
    for e in range(1, epochs + 1):
        out.append({"epoch": float(e), "step": 4 * e, "loss": 1.0 / e, "train_accuracy": 0.3 * e,
                    "learning_rate": 0.01 / e})
        if with_eval:
            out.append({"epoch": float(e), "step": 4 * e, "eval_loss": 1.1 / e, "eval_accuracy": 0.25 * e})
    return out + [{"epoch": float(epochs), "step": 4 * epochs, "train_loss": 0.5, "train_runtime": 1.0}]


def assert_png(path, min_side=200, max_side=3000):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:  # verify() leaves the file unusable; reopen for the size
        assert im.format == "PNG" and min_side <= min(im.size) and max(im.size) <= max_side, (path, im.size)


def test_numbers_equal_sklearn(tmp_path):
    split, names = fake_predictions(tmp_path)
    m = report.split_metrics(logits=split.logits, labels=split.labels)
    pred, labels, ids = split.logits.argmax(1), split.labels, list(range(len(names)))
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, pred, average=average, zero_division=0)
        assert (m[f"precision_{average}"], m[f"recall_{average}"], m[f"f1_{average}"]) == pytest.approx((p, r, f))
    cm = report.confusion_matrix(labels=labels, predictions=pred, num_classes=len(names))
    assert (cm == confusion_matrix(labels, pred, labels=ids)).all() and cm.sum() == len(labels)
    rows = report.per_class_rows(metrics=m, cm=cm, class_names=names)
    assert {r["class"]: r["support"] for r in rows} == dict(zip(names, np.bincount(labels, minlength=len(names))))
    present = [r for r in rows if r["support"] > 0]
    assert [r["f1"] for r in present] == sorted(r["f1"] for r in present)  # worst first
    assert rows[-1]["class"] == "class d"  # absent from the split: last, not "worst"
    top5 = np.mean([labels[i] in np.argsort(-split.logits[i])[:5] for i in range(len(labels))])
    assert m["top5_accuracy"] == pytest.approx(top5)
    pairs = report.top_confusions(cm=cm, class_names=names)
    assert sum(p["count"] for p in pairs) == (pred != labels).sum() or len(pairs) == 20


def test_write_report_writes_every_file(tmp_path):
    split, names = fake_predictions(tmp_path)
    out = tmp_path / "report"
    summary = report.write_report(str(out), log_history=history(), splits={"validation": split}, class_names=names,
                                  best_step=8)
    for name in SPLIT_FILES + ("metrics.json", "curves.png"):
        assert (out / name).is_file(), name
    for png in glob.glob(str(out / "*.png")):
        assert_png(png)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["splits"]["validation"]["num_images"] == len(split.labels) == 20
    ce = -np.mean([np.log(np.exp(r[c]) / np.exp(r).sum()) for r, c in zip(split.logits.astype(float), split.labels)])
    assert saved["skipped"] == [] and saved["splits"]["validation"]["loss"] == pytest.approx(ce)
    rows = list(csv.DictReader(open(out / "per_class.csv")))
    assert len(rows) == len(names) and sum(int(r["support"]) for r in rows) == 20
    cm = np.loadtxt(out / "confusion_matrix.csv", delimiter=",", skiprows=1)
    assert cm.shape == (6, 6) and cm.sum() == 20
    table = report.format_summary(summary)
    assert "| accuracy |" in table and "lowest-F1" in table

    # Rebuilt from the saved files alone (what `evaluate_model.py report RUN_DIR` does): the same numbers.
    loaded, loaded_names = report.load_predictions(str(out / "predictions_validation.npz"))
    assert loaded_names == names and loaded.paths == split.paths
    again = report.write_report(str(tmp_path / "again"), log_history=[], splits={"validation": loaded},
                                class_names=loaded_names)
    assert again["splits"] == summary["splits"]


def test_partial_inputs_write_what_they_can(tmp_path):
    out = tmp_path / "r1"
    summary = report.write_report(str(out), log_history=[], splits={}, class_names=["a", "b"])
    assert (out / "metrics.json").is_file() and not (out / "curves.png").exists()
    assert len(summary["skipped"]) == 2 and "no labeled predictions" in summary["skipped"][0]

    out = tmp_path / "r2"  # training logs only (eval_strategy no): the curves that exist, and what is missing
    summary = report.write_report(str(out), log_history=history(with_eval=False), splits={}, class_names=["a", "b"])
    assert_png(out / "curves.png")
    assert "eval_loss" in summary["skipped"][1] and "eval_accuracy" in summary["skipped"][1]


def test_confusion_order_puts_confused_classes_together(tmp_path):
    n = 40
    cm = np.diag(np.full(n, 10))
    for a, b in ((3, 31), (7, 22), (22, 38)):  # confused pairs far apart in name order
        cm[a, b] = cm[b, a] = 4
    order = list(report.confusion_order(cm))
    assert sorted(order) == list(range(n))
    pos = {c: i for i, c in enumerate(order)}
    assert abs(pos[3] - pos[31]) == 1 and abs(pos[7] - pos[22]) == 1 and abs(pos[22] - pos[38]) == 1
    assert list(report.confusion_order(cm[:10, :10])) == list(range(10))  # few classes: name order

    names = [f"species_{i:03d}_with_a_long_name" for i in range(120)]
    big = np.random.default_rng(0).integers(0, 3, size=(120, 120)) + np.diag(np.full(120, 30))
    report.plot_confusion_matrix(cm=big, class_names=names, path=str(tmp_path / "cm.png"), title="120 classes",
                                 order=report.confusion_order(big))
    assert_png(tmp_path / "cm.png", min_side=1000)


# ----------------------------------------------------------------------------------------------------------------
# Through the scripts: a tiny model trained once for the module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, offline_env):
    root = tmp_path_factory.mktemp("report_run")
    classes = {"cat": 8, "Dog": 8, "emu": 8}
    make_folder(root / "train", classes, seed=1)
    make_folder(root / "val", {"cat": 3, "Dog": 2, "emu": 2}, seed=2)  # 7: odd, so 2 processes pad a batch
    make_folder(root / "test", {"cat": 2, "emu": 2}, seed=3)  # labeled subset of the classes
    out = root / "run"
    results = train_main(["--train_dir", str(root / "train"), "--validation_dir", str(root / "val"),
                          "--test_dir", str(root / "test"), "--output_dir", str(out), "--num_train_epochs", "2"]
                         + [a if a != "none" else "tensorboard" for a in TINY_ARGS])
    return root, out, results


def test_train_writes_report_and_tensorboard_image(tiny_run):
    root, out, results = tiny_run
    rep = out / "report"
    for name in SPLIT_FILES + ("metrics.json", "curves.png", "per_class_test.csv", "confusion_matrix_test.png"):
        assert (rep / name).is_file(), name
    for png in glob.glob(str(rep / "*.png")):
        assert_png(png)
    saved = json.loads((rep / "metrics.json").read_text())["splits"]
    assert saved["validation"]["accuracy"] == pytest.approx(results["eval_accuracy"])
    assert saved["validation"]["f1_macro"] == pytest.approx(results["eval_f1_macro"])
    assert saved["validation"]["num_images"] == 7 and saved["test"]["num_images"] == 4

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.dirname(glob.glob(str(out / "runs" / "*" / "events.out.*"))[0]))
    events.Reload()
    images = events.Images("eval/confusion_matrix")
    assert len(images) == 2 and images[0].width > 200  # one per epoch's evaluation


def test_evaluate_entry_matches_training_and_reports_tta(tiny_run, tmp_path, capsys):
    root, out, results = tiny_run
    summary = evaluate_model.main(["evaluate", "--model", str(out), "--data_dir", str(root / "val"), "--output_dir",
                                   str(tmp_path / "ev"), "--tta", "flip", "multicrop", "--use_cpu",
                                   "--num_workers", "0"])
    # Same saved model, same eval preprocessing (from the saved config): the numbers of the training run.
    assert summary["splits"]["validation"]["accuracy"] == pytest.approx(results["eval_accuracy"])
    assert summary["splits"]["validation"]["loss"] == pytest.approx(results["eval_loss"], rel=1e-4)
    assert {"validation + flip", "validation + multicrop"} <= set(summary["splits"])
    assert (tmp_path / "ev" / "curves.png").is_file()  # the run's trainer_state.json is beside the model
    printed = capsys.readouterr().out
    assert "| validation | validation + flip | validation + multicrop |" in printed

    make_folder(tmp_path / "wrong", {"cat": 1, "wolf": 1})
    with pytest.raises(ConfigError, match=r"wolf.*Folder classes: \['cat', 'wolf'\].*Model classes: \['Dog', 'cat', 'emu'\]"):
        evaluate_model.main(["evaluate", "--model", str(out), "--data_dir", str(tmp_path / "wrong"),
                             "--output_dir", str(tmp_path / "x"), "--use_cpu"])


def test_report_rebuild_and_compare(tiny_run, tmp_path, capsys):
    root, out, results = tiny_run
    before = json.loads((out / "report" / "metrics.json").read_text())
    evaluate_model.main(["report", str(out), "--output_dir", str(tmp_path / "rebuilt")])
    assert json.loads((tmp_path / "rebuilt" / "metrics.json").read_text())["splits"] == before["splits"]
    assert (tmp_path / "rebuilt" / "curves.png").is_file() and (tmp_path / "rebuilt" / "per_class_test.csv").is_file()

    evaluate_model.main(["compare", str(out), str(out), "--names", "cosine", "plateau", "--output_dir",
                         str(tmp_path / "cmp")])
    printed = capsys.readouterr().out
    assert "| metric | cosine | plateau |" in printed
    assert_png(tmp_path / "cmp" / "compare.png")
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv")))
    assert [r["run"] for r in rows] == ["cosine", "plateau"]
    assert float(rows[0]["accuracy"]) == pytest.approx(results["eval_accuracy"], abs=1e-4)


@pytest.mark.slow
def test_two_processes_give_the_single_process_numbers(tiny_run, tmp_path):
    from test_distributed import cpu_launch_config

    root, out, _ = tiny_run
    one = evaluate_model.main(["evaluate", "--model", str(out), "--data_dir", str(root / "val"), "--output_dir",
                               str(tmp_path / "one"), "--use_cpu", "--num_workers", "0", "--batch_size", "2",
                               "--tta", "flip"])
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [accelerate, "launch", "--config_file", cpu_launch_config(tmp_path, 2), "--main_process_port", "29541",
           os.path.join(ROOT, "evaluate_model.py"), "evaluate", "--model", str(out), "--data_dir", str(root / "val"),
           "--output_dir", str(tmp_path / "two"), "--use_cpu", "--num_workers", "0", "--batch_size", "2",
           "--tta", "flip"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["splits"]
    # 7 images in batches of 2 over 2 processes: padded, then de-duplicated by the gather; every number agrees.
    assert two["validation"]["num_images"] == 7
    for split, values in one["splits"].items():
        assert two[split] == pytest.approx(values, rel=1e-5), split
    a = np.load(tmp_path / "one" / "predictions_validation.npz")
    b = np.load(tmp_path / "two" / "predictions_validation.npz")
    assert (a["paths"] == b["paths"]).all() and np.allclose(a["logits"], b["logits"], atol=1e-5)
