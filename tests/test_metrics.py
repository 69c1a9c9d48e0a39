import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, top_k_accuracy_score

from foldertune.metrics import ComputeMetrics, compute_classification_metrics, load_metric, top_k_accuracy


def test_local_evaluate_module_equals_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 7, 200))
    out = load_metric().compute(predictions=p, references=y, num_labels=7)
    assert out["accuracy"] == accuracy_score(y, p)
    for avg in ("macro", "weighted"):
        assert np.isclose(out[f"f1_{avg}"], f1_score(y, p, average=avg, zero_division=0))
        assert np.isclose(out[f"precision_{avg}"], precision_score(y, p, average=avg, zero_division=0))
        assert np.isclose(out[f"recall_{avg}"], recall_score(y, p, average=avg, zero_division=0))
    assert np.allclose(out["f1_per_class"], f1_score(y, p, average=None, zero_division=0))
    assert out["support_per_class"] == np.bincount(y, minlength=7).tolist()


def test_absent_class_still_has_a_row_but_does_not_lower_the_macro_average():
    out = load_metric().compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=4)
    assert len(out["f1_per_class"]) == 4 and out["support_per_class"] == [2, 1, 0, 0]
    assert out["f1_macro"] == f1_score([0, 1, 0], [0, 1, 1], average="macro")  # over classes 0 and 1 only
    wrong = load_metric().compute(predictions=[0, 3, 1], references=[0, 1, 1], num_labels=4)
    assert len(set(wrong["f1_per_class"])) > 1 and wrong["f1_macro"] == f1_score([0, 1, 1], [0, 3, 1], average="macro")


def test_top_k_by_hand():
    logits = np.array([[0.1, 0.5, 0.4], [0.9, 0.04, 0.06], [0.2, 0.3, 0.5]])
    labels = np.array([2, 1, 0])
    assert top_k_accuracy(logits, labels, 1) == 0.0
    assert top_k_accuracy(logits, labels, 2) == 1 / 3  # only row 0 has its label in the top 2
    assert top_k_accuracy(logits, labels, 5) == 1.0  # k capped at the number of classes
    assert np.isclose(top_k_accuracy(logits, labels, 2), top_k_accuracy_score(labels, logits, k=2))


def test_trainer_hook_returns_scalars_only():
    from transformers import EvalPrediction

    logits = np.eye(3)[[0, 1, 2, 2]]
    out = ComputeMetrics()(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2, 1])))
    assert out["accuracy"] == 0.75 and out["top5_accuracy"] == 1.0
    assert all(isinstance(v, float) for v in out.values())
    full = compute_classification_metrics(logits, np.array([0, 1, 2, 1]))
    assert full["support_per_class"] == [1, 2, 1]
