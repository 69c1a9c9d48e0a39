"""README command 1's data and recipe: the embedded digits as folders, trained with configs/demo.yaml, scored
against the answers kept aside for the unlabeled test folder."""

import csv
import os

from conftest import ROOT
from foldertune.demo import write_digits_demo
from train_hf import main


def test_demo_folders_and_recipe_learn_the_digits(tmp_path):
    counts = write_digits_demo(str(tmp_path / "demo"))
    assert counts == {"train": 1257, "val": 270, "test": 270} and sum(counts.values()) == 1797
    assert sorted(os.listdir(tmp_path / "demo" / "train")) == [str(d) for d in range(10)]
    answers = {r["file"]: r["label"] for r in csv.DictReader(open(tmp_path / "demo" / "test_labels.csv"))}
    assert sorted(answers) == sorted(os.listdir(tmp_path / "demo" / "test")) and len(answers) == 270

    out = tmp_path / "run"
    results = main(["--config", os.path.join(ROOT, "configs", "demo.yaml"), "--train_dir",
                    str(tmp_path / "demo" / "train"), "--validation_dir", str(tmp_path / "demo" / "val"),
                    "--test_dir", str(tmp_path / "demo" / "test"), "--output_dir", str(out),
                    "--num_train_epochs", "3", "--disable_tqdm", "true"])  # the recipe's 8 epochs give ~0.99
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    test_accuracy = sum(r["prediction"] == answers[r["file"]] for r in rows) / len(rows)
    assert len(rows) == 270 and test_accuracy >= 0.9 and results["eval_accuracy"] >= 0.9
