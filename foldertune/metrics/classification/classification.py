"""Classification metrics as an `evaluate` module, shipped with the project and loaded by path (no Hub access):

    evaluate.load("foldertune/metrics/classification")

Accuracy, macro and weighted precision/recall/F1 and per-class F1 from integer predictions and references,
computed with scikit-learn so they equal its numbers exactly.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

_DESCRIPTION = "Accuracy, macro/weighted precision, recall and F1, and per-class F1 for single-label classification."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    num_labels (int, optional): number of classes; per-class lists then have this length even when a class is
        absent from both lists (its F1 is 0, as scikit-learn with zero_division=0). Macro and weighted averages
        are over the classes present in references or predictions (scikit-learn's default).
Returns:
    accuracy, precision_macro, recall_macro, f1_macro, precision_weighted, recall_weighted, f1_weighted (floats),
    f1_per_class, precision_per_class, recall_per_class (lists of floats), support_per_class (list of ints).
"""


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None):
        labels = list(range(num_labels)) if num_labels else None
        out = {"accuracy": float(accuracy_score(references, predictions))}
        # Averages over the classes that occur (in references or predictions), scikit-learn's default: a test
        # folder holding a few of the classes is not marked down for the classes it does not contain.
        for average in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(
                references, predictions, average=average, zero_division=0)
            out.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
        p, r, f, s = precision_recall_fscore_support(references, predictions, labels=labels, average=None,
                                                     zero_division=0)
        out.update(precision_per_class=p.tolist(), recall_per_class=r.tolist(), f1_per_class=f.tolist(),
                   support_per_class=np.asarray(s).astype(int).tolist())
        return out
