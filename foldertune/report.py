"""Evaluation report: trainer log history + predictions -> metrics.json, CSVs and PNGs in output_dir/report/.

Pure functions over data a run already has (trainer_state.json's log history, logits, labels, image paths, class
names), so the report can be rebuilt from an old output_dir (`python evaluate_model.py report runs/NAME`) without
touching a model. Metrics come from the project's local `evaluate` module (foldertune.metrics).

Files written by `write_report` (for a labeled test split the per-split files get a `_test` suffix):
    metrics.json            scalars per split (accuracy, macro/weighted P/R/F1, top-5) + what was skipped
    per_class.csv           precision, recall, F1, support per class, worst F1 first
    confusions.csv          most-confused (true, predicted) pairs
    confusion_matrix.png    row-normalised; clustered so that confusions sit together at 20+ classes
    curves.png              train/validation loss and accuracy per epoch, and the learning rate
    misclassified.png       highest-confidence mistakes with true and predicted names
    worst_classes.png       sample images of the lowest-F1 classes
    predictions_<split>.npz logits, labels, paths, class names: what a rebuild reads
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only, never a window (also on machines without a display)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from sklearn.metrics import confusion_matrix as sk_confusion_matrix  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from .metrics import compute_classification_metrics  # noqa: E402

logger = logging.getLogger(__name__)

# Scalars shown in the printed table and compared across runs, in this order.
TABLE_METRICS = ("accuracy", "f1_macro", "recall_macro", "precision_macro", "f1_weighted", "recall_weighted",
                 "precision_weighted", "top5_accuracy")
CLUSTER_MIN_CLASSES = 20  # below this the name order is easy to scan; above, confusions are clustered together
ANNOTATE_MAX_CLASSES = 15  # cell counts printed inside the matrix up to this many classes


@dataclass
class SplitPredictions:
    """What the report needs from one labeled split, in dataset order (one row per image)."""

    logits: np.ndarray  # (N, C) float
    labels: np.ndarray  # (N,) int class ids
    paths: list[str]  # (N,) image files


# ----------------------------------------------------------------------------------------------------------------
# Numbers


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)  # shift: exp never overflows
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) over images, from the logits: the same under any number of processes (the
    Trainer's eval_loss averages per-batch means, which padding of the last batch across processes shifts)."""
    return float(-np.log(np.clip(softmax(logits)[np.arange(len(labels)), labels], 1e-300, None)).mean())


def split_metrics(*, logits: np.ndarray, labels: np.ndarray) -> dict:
    """Scalars and per-class lists through the local `evaluate` module, plus the image count and loss."""
    out = compute_classification_metrics(np.asarray(logits), np.asarray(labels))
    out["num_images"] = int(len(labels))
    out["loss"] = cross_entropy(np.asarray(logits), np.asarray(labels))
    return out


def scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def confusion_matrix(*, labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class; sums to the number of images."""
    return sk_confusion_matrix(labels, predictions, labels=list(range(num_classes)))


def per_class_rows(*, metrics: dict, cm: np.ndarray, class_names: list[str]) -> list[dict]:
    """One row per class, worst F1 first; classes absent from the split (support 0) go last, they have no F1."""
    off = cm - np.diag(np.diag(cm))
    rows = []
    for i, name in enumerate(class_names):
        j = int(off[i].argmax())
        rows.append({
            "class": name, "precision": metrics["precision_per_class"][i], "recall": metrics["recall_per_class"][i],
            "f1": metrics["f1_per_class"][i], "support": metrics["support_per_class"][i],
            "most_confused_with": class_names[j] if off[i, j] > 0 else "",
            "confused_count": int(off[i, j]),
        })
    return sorted(rows, key=lambda r: (r["support"] == 0, r["f1"], r["recall"], r["class"]))


def top_confusions(*, cm: np.ndarray, class_names: list[str], k: int = 20) -> list[dict]:
    """The k largest off-diagonal cells: (true, predicted, count, share of the true class's images)."""
    off = cm - np.diag(np.diag(cm))
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    rows = []
    for true, pred in zip(*np.unravel_index(flat, off.shape)):
        if off[true, pred] == 0:
            break
        rows.append({"true": class_names[true], "predicted": class_names[pred], "count": int(off[true, pred]),
                     "share_of_true": float(off[true, pred] / max(cm[true].sum(), 1))})
    return rows


def confusion_order(cm: np.ndarray, *, min_classes: int = CLUSTER_MIN_CLASSES) -> np.ndarray:
    """Class order for the plot: name order below `min_classes`, else hierarchical clustering on how often two
    classes are mistaken for each other (symmetrised row-normalised confusion), so confused classes sit together."""
    n = cm.shape[0]
    if n < min_classes:
        return np.arange(n)
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    sim = (rates + rates.T) / 2
    np.fill_diagonal(sim, 0)
    if sim.max() == 0:  # no confusions at all: nothing to cluster
        return np.arange(n)
    dist = squareform(1 - sim / sim.max(), checks=False)  # condensed; 0 = most-confused pair, 1 = never confused
    z = linkage(dist, method="average")
    if n <= 300:  # O(n^3): seconds at 300 classes, too slow beyond
        z = optimal_leaf_ordering(z, dist)
    return leaves_list(z)


# ----------------------------------------------------------------------------------------------------------------
# Log history (trainer_state.json)


def history_series(log_history: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """(epochs, values) per curve from the Trainer's log history; absent keys give no series."""
    keys = {"train_loss": ("loss", "loss"), "train_accuracy": ("loss", "train_accuracy"),
            "learning_rate": ("loss", "learning_rate"), "eval_loss": ("eval_loss", "eval_loss"),
            "eval_accuracy": ("eval_loss", "eval_accuracy")}
    out = {}
    for name, (marker, key) in keys.items():
        # Training logs carry "loss", evaluation logs "eval_loss"; the run summary ("train_loss") is neither.
        points = [(h["epoch"], h[key]) for h in log_history if marker in h and key in h and "epoch" in h]
        if points:
            out[name] = ([p[0] for p in points], [p[1] for p in points])
    return out


def best_epoch(log_history: list[dict], best_step: int | None) -> float | None:
    """Epoch of the evaluation at the Trainer's best_global_step (the checkpoint kept as the final model)."""
    for h in log_history:
        if best_step is not None and h.get("step") == best_step and "eval_loss" in h:
            return h.get("epoch")
    return None


def load_trainer_state(run_dir: str) -> dict:
    """trainer_state.json of a run, or of its latest checkpoint when the run stopped before writing its own."""
    path = os.path.join(run_dir, "trainer_state.json")
    if not os.path.isfile(path):
        checkpoints = [d for d in os.listdir(run_dir) if d.startswith("checkpoint-") and d[11:].isdigit()]
        if not checkpoints:
            return {}
        path = os.path.join(run_dir, max(checkpoints, key=lambda d: int(d[11:])), "trainer_state.json")
        if not os.path.isfile(path):
            return {}
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------------------------
# Plots (each returns nothing and writes one PNG)


def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _short(name: str, width: int = 22) -> str:
    """Cut long names in the middle: class names often differ only at the end (species_12 vs species_13)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[-(width - 1 - head):]


def plot_confusion_matrix(*, cm: np.ndarray, class_names: list[str], path: str, title: str,
                          order: np.ndarray | None = None) -> None:
    """Row-normalised heatmap (each row: where the images of that true class went), square-root colour scale so
    that a few percent of confusion is visible next to a bright diagonal. Figure and font scale with the class
    count: about 0.12 inch per class, and every n-th name when names would be smaller than 4.5 pt."""
    n = cm.shape[0]
    order = np.arange(n) if order is None else np.asarray(order)
    m = cm[np.ix_(order, order)]
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = float(np.clip(3 + 0.12 * n, 6, 24))  # inches
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(rates, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0, vmax=1), interpolation="nearest")
    cell_pt = 72 * side * 0.78 / n  # height of one row in points (axes take ~78 % of the figure)
    font = min(10.0, 0.8 * cell_pt)
    every = max(1, math.ceil(4.5 / font)) if font < 4.5 else 1
    font = max(font, 4.5)
    ticks = np.arange(0, n, every)
    names = [_short(class_names[i]) for i in order[ticks]]
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= ANNOTATE_MAX_CLASSES:  # counts inside the cells; white on dark cells
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=9,
                            color="white" if rates[i, j] > 0.5 else "black")
    ordered = " (classes ordered so that confused ones sit together)" if not np.array_equal(order, np.arange(n)) else ""
    ax.set_title(f"{title}{ordered}", fontsize=11)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cbar.set_label("share of the true class's images (row-normalised)")
    _save(fig, path)


def plot_curves(*, log_history: list[dict], path: str, best_step: int | None = None) -> list[str]:
    """Loss, accuracy (train and validation) and learning rate per epoch. Returns the curves it could not draw."""
    series = history_series(log_history)
    best = best_epoch(log_history, best_step)
    panels = [("loss", [("train_loss", "train"), ("eval_loss", "validation")]),
              ("accuracy", [("train_accuracy", "train (augmented, dropout on)"), ("eval_accuracy", "validation")]),
              ("learning rate", [("learning_rate", "learning rate (used in that epoch)")])]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    missing = []
    for ax, (title, curves) in zip(axes, panels):
        drawn = False
        for key, label in curves:
            if key in series:
                ax.plot(*series[key], marker="o", markersize=3, label=label)
                drawn = True
            else:
                missing.append(key)
        if best is not None and title != "learning rate":
            ax.axvline(best, color="grey", linestyle=":", label=f"best checkpoint (epoch {best:g})")
        if not drawn:
            ax.text(0.5, 0.5, "not in the log history", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    _save(fig, path)
    return missing


def _thumbnail(path: str, size: int = 160) -> np.ndarray:
    """RGB thumbnail as a person sees the file (EXIF rotation applied); grey if unreadable."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((size, size))
            return np.asarray(im)
    except (OSError, ValueError):
        return np.full((size, size, 3), 128, dtype=np.uint8)


def _image_grid(cells: list[tuple[str, str, str]], path: str, title: str, cols: int, empty_text: str,
                row_titles: list[str] | None = None) -> None:
    """cells: (image path, caption, colour); an empty string path leaves the cell blank."""
    rows = max(1, math.ceil(len(cells) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.7 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, caption, colour) in zip(axes.flat, cells):
        if img:
            ax.imshow(_thumbnail(img))
            ax.set_title(caption, fontsize=8, color=colour)
    if row_titles:
        for r, text in enumerate(row_titles):
            axes[r, 0].text(-0.08, 0.5, text, transform=axes[r, 0].transAxes, rotation=90, ha="right",
                            va="center", fontsize=9, fontweight="bold")
    if not cells:
        axes[0, 0].text(0, 0.5, empty_text, fontsize=12)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save(fig, path)


def plot_misclassified(*, probs: np.ndarray, labels: np.ndarray, paths: list[str], class_names: list[str],
                       path: str, title: str, max_images: int = 20) -> int:
    """Grid of the highest-confidence mistakes. Returns how many mistakes there were in total."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:max_images]
    cells = [(paths[i], f"true: {_short(class_names[labels[i]], 18)}\npred: {_short(class_names[pred[i]], 18)} "
              f"({probs[i, pred[i]]:.0%})", "firebrick") for i in wrong]
    total = int((pred != labels).sum())
    _image_grid(cells, path, f"{title}: {min(total, max_images)} most confident of {total} mistakes",
                cols=5, empty_text="no mistakes")
    return total


def plot_worst_classes(*, rows: list[dict], probs: np.ndarray, labels: np.ndarray, paths: list[str],
                       class_names: list[str], path: str, title: str, k: int = 3, per_class: int = 6) -> None:
    """One row per lowest-F1 class: its images, mistakes first (red, with the prediction), then correct ones."""
    pred = probs.argmax(1)
    index = {n: i for i, n in enumerate(class_names)}
    worst = [r for r in rows if r["support"] > 0][:k]
    cells, row_titles = [], []
    for r in worst:
        c = index[r["class"]]
        mine = np.flatnonzero(labels == c)
        wrong, right = mine[pred[mine] != c], mine[pred[mine] == c]
        n_wrong = min(len(wrong), max(per_class - 2, per_class - len(right)))  # keep 2 correct ones to compare
        mine = np.concatenate([wrong[:n_wrong], right[:per_class - n_wrong]])
        for i in mine:
            ok = pred[i] == c
            cells.append((paths[i], "correct" if ok else f"pred: {_short(class_names[pred[i]], 18)}",
                          "darkgreen" if ok else "firebrick"))
        cells += [("", "", "")] * (per_class - len(mine))
        row_titles.append(f"{_short(r['class'], 18)}\nF1 {r['f1']:.2f}  n={r['support']}")
    _image_grid(cells, path, f"{title}: the {len(worst)} lowest-F1 classes", cols=per_class,
                empty_text="no labeled images", row_titles=row_titles)


# ----------------------------------------------------------------------------------------------------------------
# Files


def save_predictions(path: str, *, split: SplitPredictions, class_names: list[str]) -> None:
    np.savez_compressed(path, logits=split.logits.astype(np.float32), labels=split.labels.astype(np.int64),
                        paths=np.asarray(split.paths, dtype=str), class_names=np.asarray(class_names, dtype=str))


def load_predictions(path: str) -> tuple[SplitPredictions, list[str]]:
    with np.load(path, allow_pickle=False) as f:
        split = SplitPredictions(logits=f["logits"], labels=f["labels"], paths=f["paths"].tolist())
        return split, f["class_names"].tolist()


def _write_csv(path: str, rows: list[dict], fields: list[str]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()})


def write_split(out_dir: str, *, name: str, split: SplitPredictions, class_names: list[str],
                worst_k: int = 3) -> dict:
    """Every per-split file for one labeled split; returns its metrics (scalars + per-class rows)."""
    suffix = "" if name == "validation" else f"_{name}"
    metrics = split_metrics(logits=split.logits, labels=split.labels)
    probs = softmax(split.logits)
    cm = confusion_matrix(labels=split.labels, predictions=probs.argmax(1), num_classes=len(class_names))
    rows = per_class_rows(metrics=metrics, cm=cm, class_names=class_names)
    _write_csv(os.path.join(out_dir, f"per_class{suffix}.csv"), rows, list(rows[0]))
    _write_csv(os.path.join(out_dir, f"confusions{suffix}.csv"), top_confusions(cm=cm, class_names=class_names),
               ["true", "predicted", "count", "share_of_true"])
    np.savetxt(os.path.join(out_dir, f"confusion_matrix{suffix}.csv"), cm, fmt="%d", delimiter=",",
               header=",".join(class_names), comments="")
    plot_confusion_matrix(cm=cm, class_names=class_names, path=os.path.join(out_dir, f"confusion_matrix{suffix}.png"),
                          order=confusion_order(cm),
                          title=f"Confusion matrix, {name} ({len(split.labels)} images, "
                                f"accuracy {metrics['accuracy']:.4f})")
    plot_misclassified(probs=probs, labels=split.labels, paths=split.paths, class_names=class_names,
                       path=os.path.join(out_dir, f"misclassified{suffix}.png"), title=f"Mistakes on {name}")
    plot_worst_classes(rows=rows, probs=probs, labels=split.labels, paths=split.paths, class_names=class_names,
                       path=os.path.join(out_dir, f"worst_classes{suffix}.png"), title=f"{name.capitalize()}",
                       k=worst_k)
    save_predictions(os.path.join(out_dir, f"predictions_{name}.npz"), split=split, class_names=class_names)
    return {"scalars": scalars(metrics), "per_class": rows}


def write_report(out_dir: str, *, log_history: list[dict], splits: dict[str, SplitPredictions],
                 class_names: list[str], best_step: int | None = None, extra: dict | None = None,
                 worst_k: int = 3) -> dict:
    """The whole report into out_dir; writes what the inputs allow and lists the rest under "skipped".

    log_history: trainer_state.json's list (may be empty); splits: labeled splits by name ("validation", "test");
    extra: more scalar columns for metrics.json and the table (e.g. test-time augmentation results)."""
    os.makedirs(out_dir, exist_ok=True)
    summary: dict = {"class_names": class_names, "splits": {}, "per_class": {}, "skipped": []}
    for name, split in splits.items():
        result = write_split(out_dir, name=name, split=split, class_names=class_names, worst_k=worst_k)
        summary["splits"][name] = result["scalars"]
        summary["per_class"][name] = result["per_class"]
    if not splits:
        summary["skipped"].append("metrics, per-class table, confusion matrix and image grids: no labeled "
                                  "predictions (no validation set and no labeled test set)")
    summary["splits"].update(extra or {})
    if log_history:
        missing = plot_curves(log_history=log_history, path=os.path.join(out_dir, "curves.png"), best_step=best_step)
        if missing:
            summary["skipped"].append(f"curves not in the log history: {', '.join(missing)}")
    else:
        summary["skipped"].append("curves.png: no log history (no trainer_state.json)")
    for reason in summary["skipped"]:
        logger.warning("report: skipped %s", reason)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump({k: v for k, v in summary.items() if k != "per_class"}, f, indent=2)
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Tables (returned as text; the scripts print or log them)


def format_table(columns: dict[str, dict], *, metrics: tuple[str, ...] = ("num_images", "loss") + TABLE_METRICS,
                 first: str = "metric") -> str:
    """Markdown table: one row per metric, one column per split / run / TTA variant."""
    names = list(columns)
    lines = [f"| {first} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for m in metrics:
        if not any(m in columns[n] for n in names):
            continue
        cells = [columns[n].get(m) for n in names]
        lines.append(f"| {m} | " + " | ".join("" if c is None else f"{c:.4f}" if isinstance(c, float) else str(c)
                                              for c in cells) + " |")
    return "\n".join(lines)


def format_worst(rows: list[dict], k: int = 5) -> str:
    lines = ["| class | F1 | precision | recall | support | most confused with |", "|---|---:|---:|---:|---:|---|"]
    for r in [r for r in rows if r["support"] > 0][:k]:
        lines.append(f"| {r['class']} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {r['support']} "
                     f"| {r['most_confused_with']} |")
    return "\n".join(lines)


def format_summary(summary: dict, *, worst_k: int = 5) -> str:
    parts = [format_table(summary["splits"])] if summary["splits"] else []
    for name, rows in summary.get("per_class", {}).items():
        parts.append(f"{name}: the {min(worst_k, len(rows))} lowest-F1 classes\n{format_worst(rows, worst_k)}")
    parts += [f"skipped: {s}" for s in summary["skipped"]]
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# Comparing runs


def run_scalars(run_dir: str) -> dict:
    """A run's validation scalars: report/metrics.json when there is one, else eval_* of all_results.json."""
    path = os.path.join(run_dir, "report", "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)["splits"].get("validation", {})
    path = os.path.join(run_dir, "all_results.json")
    if os.path.isfile(path):
        with open(path) as f:
            res = json.load(f)
        return {k[5:]: v for k, v in res.items() if k.startswith("eval_")} | (
            {"num_images": res["eval_samples"]} if "eval_samples" in res else {})
    return {}


def plot_compare(*, histories: dict[str, list[dict]], path: str) -> None:
    """Loss, accuracy and LR of several runs in one figure: colour = run, solid = validation, dashed = train."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = [("loss", "train_loss", "eval_loss"), ("accuracy", "train_accuracy", "eval_accuracy"),
              ("learning rate", "learning_rate", None)]
    for r, (run, history) in enumerate(histories.items()):
        series = history_series(history)
        colour = colours[r % len(colours)]
        for ax, (_, train_key, val_key) in zip(axes, panels):
            if train_key in series:
                ax.plot(*series[train_key], color=colour, linestyle="--" if val_key else "-", alpha=0.8)
            if val_key and val_key in series:
                ax.plot(*series[val_key], color=colour, linestyle="-", marker="o", markersize=3)
    for ax, (title, _, _) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        ax.grid(alpha=0.3)
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[r % len(colours)], lw=2, label=run) for r, run in enumerate(histories)]
    handles += [Line2D([], [], color="black", linestyle="-", marker="o", markersize=3, label="validation"),
                Line2D([], [], color="black", linestyle="--", label="train")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=9, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    _save(fig, path)


def compare_runs(out_dir: str, *, run_dirs: dict[str, str]) -> str:
    """compare.png (overlaid curves) and compare.csv (validation scalars per run) in out_dir; returns the table."""
    os.makedirs(out_dir, exist_ok=True)
    histories = {name: load_trainer_state(d).get("log_history", []) for name, d in run_dirs.items()}
    for name, history in histories.items():
        if not history:
            logger.warning("compare: %s has no trainer_state.json log history; no curves for it", name)
    plot_compare(histories=histories, path=os.path.join(out_dir, "compare.png"))
    columns = {name: run_scalars(d) for name, d in run_dirs.items()}
    fields = ["run", "num_images", "loss", *TABLE_METRICS]
    _write_csv(os.path.join(out_dir, "compare.csv"),
               [{"run": n} | {k: c[k] for k in fields[1:] if k in c} for n, c in columns.items()], fields)
    return format_table(columns)


# ----------------------------------------------------------------------------------------------------------------
# TensorBoard: the confusion matrix at each evaluation


class ConfusionRecorder:
    """Wraps a Trainer `compute_metrics`: keeps the last evaluation's confusion matrix (C x C ints, CPU) for
    `ConfusionMatrixCallback`. Runs on the gathered predictions, so every process holds the same matrix."""

    def __init__(self, compute_metrics, *, num_classes: int):
        self.compute_metrics = compute_metrics
        self.num_classes = num_classes
        self.last: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict:
        logits, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        self.last = confusion_matrix(labels=labels, predictions=logits.argmax(-1), num_classes=self.num_classes)
        return self.compute_metrics(eval_pred)


class ConfusionMatrixCallback(TrainerCallback):
    """Adds the confusion-matrix figure to the TensorBoard run of the Trainer's own TensorBoardCallback (same
    event files as the scalars), under `eval/confusion_matrix`, at each evaluation's global step."""

    def __init__(self, *, recorder: ConfusionRecorder, class_names: list[str], callback_handler):
        self.recorder = recorder
        self.class_names = class_names
        self.callback_handler = callback_handler  # the Trainer's; its TensorBoardCallback owns the writer

    def on_evaluate(self, args, state, control, **kwargs):
        from transformers.integrations import TensorBoardCallback

        tensorboard = [c for c in self.callback_handler.callbacks if isinstance(c, TensorBoardCallback)]
        writer = tensorboard[0].tb_writer if tensorboard else None
        if not state.is_world_process_zero or writer is None or self.recorder.last is None:
            return
        import io

        buf = io.BytesIO()
        cm = self.recorder.last
        plot_confusion_matrix(cm=cm, class_names=self.class_names, path=buf, order=confusion_order(cm),
                              title=f"Confusion matrix, validation, epoch {state.epoch:g}")
        buf.seek(0)
        image = np.asarray(Image.open(buf).convert("RGB"))
        writer.add_image("eval/confusion_matrix", image, state.global_step, dataformats="HWC")
        writer.flush()
