"""Metrics for the Trainer: the local `evaluate` module (loaded by path, never from the Hub) plus top-k accuracy."""

from __future__ import annotations

import os

import evaluate
import numpy as np

MODULE_PATH = os.path.join(os.path.dirname(__file__), "classification")


def load_metric() -> evaluate.EvaluationModule:
    return evaluate.load(MODULE_PATH)


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true label is among the k highest logits (k capped at the number of classes)."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def compute_classification_metrics(logits: np.ndarray, labels: np.ndarray, metric=None) -> dict:
    """All scalar and per-class metrics for one set of logits (N, C) and labels (N,)."""
    metric = metric or load_metric()
    num_labels = logits.shape[1]
    out = metric.compute(predictions=logits.argmax(-1), references=labels, num_labels=num_labels)
    out["top5_accuracy"] = top_k_accuracy(logits, labels, 5)
    return out


class ComputeMetrics:
    """Trainer `compute_metrics`: scalars only (the Trainer logs every value it is given)."""

    def __init__(self):
        self.metric = load_metric()

    def __call__(self, eval_pred) -> dict:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        out = compute_classification_metrics(np.asarray(logits), np.asarray(labels), self.metric)
        return {k: v for k, v in out.items() if not isinstance(v, list)}
