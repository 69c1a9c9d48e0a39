"""Publish a finished run to the Hugging Face Hub: render the model card, then upload through `huggingface_hub`.

    python publish.py runs/r152 --repo_id user/plants-r152 [--private] [--revision main]   # an existing output_dir
    python train_hf.py ... --push_to_hub --hub_model_id user/plants-r152                     # at the end of training

The repo that lands is the run folder's published subset (PUBLISHED): model.safetensors + config.json in timm's
layout (loads with `pipeline`, `AutoModelForImageClassification` and `timm.create_model("hf-hub:...")`),
run_config.yaml, the metrics files, report/ (metrics.json, per-class CSVs, plots), and README.md rendered from the
top-level model_card.md. Checkpoints, training_args.bin (a pickle) and predictions are never uploaded.

The token comes only from HF_TOKEN or `hf auth login` (huggingface_hub's own lookup); it is never passed around,
logged or written. Any failure raises PublishError whose one-line message ends with the exact retry command; the
local output_dir is only ever added to (README.md, the card as uploaded), never modified otherwise.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import json
import logging
import os
import re
import shlex
from dataclasses import dataclass
from typing import Iterator

import yaml

logger = logging.getLogger(__name__)

TEMPLATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model_card.md")
# What a Hub repo holds (relative to output_dir). Order = upload order; report/*.npz (logits + local paths) stays home.
PUBLISHED = ("model.safetensors", "config.json", "README.md", "run_config.yaml", "run_info.json", "all_results.json",
             "train_results.json", "eval_results.json", "test_results.json", "trainer_state.json",
             "report/*.json", "report/*.csv", "report/*.png")
REQUIRED = ("model.safetensors", "config.json")  # without these the repo would not load: refuse to publish
RUN_INFO = "run_info.json"
DEFAULT_TIMEOUT_S = 60.0  # per network operation (connect, each read/write), not for the whole upload
METRICS = (("accuracy", "Accuracy"), ("f1_macro", "F1 (macro)"), ("recall_macro", "Recall (macro)"),
           ("precision_macro", "Precision (macro)"), ("top5_accuracy", "Top-5 accuracy"))
CLASS_LIST_FOLD = 20  # longer class lists go into a <details> block


class PublishError(RuntimeError):
    """The push did not complete; the message is one line and ends with the command that retries it."""


class IncompleteRunError(PublishError):
    """The folder is not a finished run (no model): there is nothing to retry."""


@dataclass
class PushRequest:
    """Where a run goes on the Hub. repo_id without a namespace lands in the token owner's namespace."""

    repo_id: str
    private: bool = False
    revision: str | None = None  # a branch; created from main when missing
    commit_message: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# train_hf.py integration


def push_request_from_args(args) -> PushRequest | None:
    """Our push replaces the Trainer's: map --push_to_hub / --hub_model_id / --hub_private_repo / --hub_revision.
    The caller then sets args.push_to_hub = False so the Trainer neither creates the repo nor uploads checkpoints.
    (--hub_token never gets here: config.validate refuses it, the token comes from HF_TOKEN or `hf auth login`.)"""
    if not args.push_to_hub:
        return None
    run_name = os.path.basename(os.path.normpath(args.output_dir))
    return PushRequest(repo_id=args.hub_model_id or run_name, private=bool(args.hub_private_repo),
                       revision=args.hub_revision, commit_message=default_commit_message(args.output_dir))


def default_commit_message(output_dir: str) -> str:
    """'Upload <run name> (foldertune)': the run name is the output_dir's, as the Trainer names runs."""
    return f"Upload {os.path.basename(os.path.normpath(output_dir))} (foldertune)"


def describe_hardware(world_size: int) -> str:
    """'2 x NVIDIA H100 80GB HBM3' or '1 process on CPU (16 cores)' for the card."""
    import torch

    if torch.cuda.is_available():
        return f"{world_size} x {torch.cuda.get_device_name(0)}"
    procs = "process" if world_size == 1 else "processes"
    return f"{world_size} {procs} on CPU ({os.cpu_count()} cores)"


def write_run_info(output_dir: str, *, splits: dict[str, int], test_labeled: bool | None, world_size: int,
                   hardware: str, validation_from_train: bool, resumed_from: str | None = None) -> None:
    """Facts only the training process knows (split sizes, processes, hardware), for the card of a later publish."""
    import timm
    import torch
    import transformers

    info = {"splits": splits, "test_labeled": test_labeled, "validation_from_train": validation_from_train,
            "world_size": world_size, "hardware": hardware,
            "resumed_from": os.path.basename(os.path.normpath(resumed_from)) if resumed_from else None,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "timm": timm.__version__}}
    with open(os.path.join(output_dir, RUN_INFO), "w") as f:
        json.dump(info, f, indent=2)


# ----------------------------------------------------------------------------------------------------------------
# Reading a run folder


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _read_yaml(path: str) -> dict:
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _front_matter(path: str) -> dict:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return {}
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
    return (yaml.safe_load(m.group(1)) or {}) if m else {}


def split_metrics(output_dir: str) -> dict[str, dict]:
    """{'validation': {accuracy: ..., num_images: ...}, 'test': {...}}: report/metrics.json when the report exists,
    else the Trainer's eval_/test_ results (which every run writes)."""
    report = _read_json(os.path.join(output_dir, "report", "metrics.json"))
    if report.get("splits"):
        return {name: values for name, values in report["splits"].items() if isinstance(values, dict)}
    results = _read_json(os.path.join(output_dir, "all_results.json"))
    for name in ("eval_results.json", "test_results.json"):
        results = {**_read_json(os.path.join(output_dir, name)), **results}
    out = {}
    for split, prefix in (("validation", "eval_"), ("test", "test_")):
        values = {k[len(prefix):]: v for k, v in results.items() if k.startswith(prefix)}
        if "samples" in values:
            values["num_images"] = values.pop("samples")
        if any(m in values for m, _ in METRICS):
            out[split] = values
    return out


def worst_classes(output_dir: str, *, k: int = 5) -> tuple[str, list[dict]]:
    """The lowest-F1 classes from report/per_class.csv (validation; else the test one), worst first."""
    for split, name in (("validation", "per_class.csv"), ("test", "per_class_test.csv")):
        path = os.path.join(output_dir, "report", name)
        if os.path.isfile(path):
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if float(r.get("support") or 0) > 0]
            rows.sort(key=lambda r: float(r.get("f1") or 0))
            return split, rows[:k]
    return "", []


def base_checkpoint(model_name_or_path: str, pretrained: bool) -> dict:
    """What the model was fine-tuned from: Hub id (for base_model metadata) and licence, when they are known.
    A local folder is only called a Hub id when its config says so (pretrained_cfg.hf_hub_id)."""
    if not pretrained:
        return {"hub_id": None, "label": f"none (timm `{model_name_or_path}`, random initialisation)",
                "origin": f"trained from scratch (timm `{model_name_or_path}`, random initialisation)",
                "license": None}
    config, readme = {}, {}
    if os.path.isdir(model_name_or_path):
        config = _read_json(os.path.join(model_name_or_path, "config.json"))
        readme = _front_matter(os.path.join(model_name_or_path, "README.md"))
        hub_id = (config.get("pretrained_cfg") or {}).get("hf_hub_id")
    else:
        hub_id = model_name_or_path
        from huggingface_hub import try_to_load_from_cache  # offline: only what a previous download left

        for name, into in (("config.json", config), ("README.md", None)):
            cached = try_to_load_from_cache(hub_id, name)
            if isinstance(cached, str):
                if into is None:
                    readme = _front_matter(cached)
                else:
                    into.update(_read_json(cached))
    license_ = readme.get("license") or (config.get("pretrained_cfg") or {}).get("license")
    name = os.path.basename(os.path.normpath(model_name_or_path))
    if hub_id:
        label = f"[{hub_id}](https://huggingface.co/{hub_id})"
    else:
        label = f"`{name}` (a local checkpoint of timm's `{config.get('architecture', name)}`)"
    return {"hub_id": hub_id, "label": label, "origin": f"fine-tuned from {label}", "license": license_}


# ----------------------------------------------------------------------------------------------------------------
# Rendering the card


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _shown_metrics(num_classes: int) -> tuple[tuple[str, str], ...]:
    """Top-5 accuracy is 1.0 by construction with 5 classes or fewer: leave it out of the card then."""
    return tuple(m for m in METRICS if m[0] != "top5_accuracy" or num_classes > 5)


def _metrics_table(metrics: dict[str, dict], shown: tuple[tuple[str, str], ...]) -> str:
    if not metrics:
        return "No evaluation results were found in the run folder."
    splits = list(metrics)
    lines = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for key, label in (("num_images", "images"),) + shown:
        if any(key in metrics[s] for s in splits):
            lines.append(f"| {label} | " + " | ".join(_fmt(metrics[s].get(key, "")) for s in splits) + " |")
    return "\n".join(lines)


def _worst_table(split: str, rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [f"Lowest-F1 classes ({split}):", "", "| class | F1 | precision | recall | images | most confused with |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.get('class', '')} | {r.get('f1', '')} | {r.get('precision', '')} | {r.get('recall', '')} "
                     f"| {r.get('support', '')} | {r.get('most_confused_with', '')} |")
    return "\n".join(lines)


def _figures(output_dir: str) -> str:
    captions = (("confusion_matrix.png", "Confusion matrix (validation)"), ("curves.png", "Training curves"),
                ("confusion_matrix_test.png", "Confusion matrix (test)"),
                ("misclassified.png", "Most confident mistakes (validation)"),
                ("worst_classes.png", "Lowest-F1 classes (validation)"))
    shown = [f"![{cap}](report/{name})" for name, cap in captions
             if os.path.isfile(os.path.join(output_dir, "report", name))]
    return "\n\n".join(shown) if shown else "(No plots: the run folder has no report/.)"


def _class_list(names: list[str]) -> str:
    listed = ", ".join(f"`{n}`" for n in names)
    if len(names) <= CLASS_LIST_FOLD:
        return listed
    return f"<details><summary>{len(names)} classes (click to expand)</summary>\n\n{listed}\n\n</details>"


def _split_sizes(run_info: dict, metrics: dict[str, dict]) -> str:
    sizes = dict(run_info.get("splits") or {})
    for split in ("validation", "test"):
        if split not in sizes and "num_images" in metrics.get(split, {}):
            sizes[split] = metrics[split]["num_images"]
    if not sizes:
        return "Split sizes were not recorded."
    parts = [f"{name} {n} images" for name, n in sizes.items()]
    notes = []
    if run_info.get("validation_from_train"):
        notes.append("validation is a seeded stratified split of the train folder")
    if run_info.get("test_labeled") is False:
        notes.append("the test folder is unlabeled (predictions only)")
    return ", ".join(parts) + (f" ({'; '.join(notes)})" if notes else "") + "."


def _recipe_table(cfg: dict, run_info: dict) -> str:
    world = run_info.get("world_size")
    per_device = cfg.get("per_device_train_batch_size")
    accum = cfg.get("gradient_accumulation_steps", 1)
    procs = "process" if world == 1 else "processes"
    batch = (f"{per_device * world * accum} = {per_device} per device x {world} {procs} x {accum} accumulation"
             if world and per_device else f"{per_device} per device x processes x {accum} accumulation")
    precision = "bf16 mixed" if cfg.get("bf16") else "fp16 mixed" if cfg.get("fp16") else "fp32"
    aug = [f"train crop {cfg.get('train_crop')} {cfg.get('image_size')} px"
           + (f" (scale {cfg.get('rrc_scale')})" if cfg.get("train_crop") == "random_resized" else
              f" after resize {cfg.get('train_resize')}")]
    for key, label in (("hflip", "horizontal flip p"), ("color_jitter", "colour jitter"), ("translate", "translate"),
                       ("rotation", "rotation deg"), ("random_erasing", "random erasing p")):
        if cfg.get(key):
            aug.append(f"{label} {cfg[key]}")
    schedule = cfg.get("lr_schedule")
    if schedule == "cosine":
        t_max = cfg.get("t_max_epochs") or cfg.get("num_train_epochs")
        schedule += f" (T_max {t_max} epochs, min_lr {cfg.get('min_lr')})"
    elif schedule == "step":
        schedule += f" (every {cfg.get('step_size_epochs')} epochs x {cfg.get('gamma')})"
    if cfg.get("warmup_steps"):
        schedule += f", linear warmup {cfg['warmup_steps']} steps"
    rows = [
        ("resolution", f"train {cfg.get('image_size')} px, eval {cfg.get('eval_size') or cfg.get('image_size')} px "
                       f"({cfg.get('eval_crop_mode')} crop)"),
        ("augmentation", ", ".join(aug)),
        ("optimizer", f"{cfg.get('optim')} lr {cfg.get('learning_rate')}, weight decay {cfg.get('weight_decay')}"
                      + (f", {cfg['optim_args']}" if cfg.get("optim_args") else "")),
        ("schedule", f"{schedule}, stepped per epoch" if cfg.get("lr_schedule") != "hf"
                     else f"{cfg.get('lr_scheduler_type')} (per step)"),
        ("epochs", str(cfg.get("num_train_epochs"))),
        ("batch", batch),
        ("precision", precision),
        ("regularisation", f"dropout {cfg.get('drop_rate')} before the head, drop path {cfg.get('drop_path_rate')}, "
                           f"gradient clipping {cfg.get('max_grad_norm') or 'off'}"),
        ("best model by", f"{cfg.get('metric_for_best_model')} (validation)"
                          if cfg.get("load_best_model_at_end") else "last epoch"),
        ("seed", str(cfg.get("seed"))),
    ]
    return "\n".join(["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def _hardware(run_info: dict, output_dir: str) -> str:
    train = _read_json(os.path.join(output_dir, "train_results.json")) or _read_json(
        os.path.join(output_dir, "all_results.json"))
    seconds = train.get("train_runtime")
    parts = [f"Trained on {run_info['hardware']}" if run_info.get("hardware") else "Hardware was not recorded"]
    if seconds is not None and run_info.get("resumed_from"):  # the Trainer times only the part after resuming
        parts.append(f"the last session resumed from {run_info['resumed_from']} and trained {seconds / 60:.1f} min "
                     f"(the time before resuming was not recorded)")
    elif seconds is not None:
        parts.append(f"training took {seconds / 60:.1f} min wall time ({seconds:.0f} s, evaluation included)")
    versions = run_info.get("versions") or {}
    if versions:
        parts.append("with " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "; ".join(parts) + "."


def _card_data(*, repo_name: str, base: dict, license_: str, dataset_id: str | None, dataset_name: str,
               metrics: dict[str, dict], shown: tuple[tuple[str, str], ...]) -> str:
    """YAML front matter through huggingface_hub's ModelCardData, so model-index is in the Hub's own schema."""
    from huggingface_hub import EvalResult, ModelCardData

    results = [EvalResult(task_type="image-classification", task_name="Image Classification",
                          dataset_type=dataset_id or "imagefolder", dataset_name=dataset_name,
                          dataset_split=split, metric_type=key, metric_name=f"{label} ({split})",
                          metric_value=round(float(values[key]), 4))
               for split, values in metrics.items() for key, label in shown if key in values]
    data = ModelCardData(library_name="timm", pipeline_tag="image-classification", license=license_,
                         tags=["image-classification", "timm", "transformers", "foldertune"],
                         base_model=base["hub_id"], datasets=[dataset_id] if dataset_id else None,
                         metrics=[key for key, _ in shown], model_name=repo_name,
                         eval_results=results or None)
    return data.to_yaml().strip()


def render_card(output_dir: str, *, repo_id: str, template: str = TEMPLATE, dataset_id: str | None = None,
                license_: str | None = None, base_model: str | None = None) -> str:
    """The card for output_dir as it would land at repo_id. Placeholders are `{{ name }}`; a missing value or a
    leftover placeholder raises, so a half-rendered card is never uploaded."""
    cfg = _read_yaml(os.path.join(output_dir, "run_config.yaml"))
    config = _read_json(os.path.join(output_dir, "config.json"))
    run_info = _read_json(os.path.join(output_dir, RUN_INFO))
    metrics = split_metrics(output_dir)
    worst_split, worst = worst_classes(output_dir)
    base = base_checkpoint(cfg.get("model_name_or_path", "unknown"), bool(cfg.get("pretrained", True)))
    if base_model:
        label = f"[{base_model}](https://huggingface.co/{base_model})"
        base = {**base, "hub_id": base_model, "label": label, "origin": f"fine-tuned from {label}"}
    license_ = license_ or base["license"] or "unknown"
    # TimmWrapperConfig stores the labels as a top-level label_names list (timm reads it from there as well)
    id2label = config.get("id2label") or {}
    class_names = config.get("label_names") or [id2label[k] for k in sorted(id2label, key=int)]
    train_dir = cfg.get("train_dir") or ""
    dataset_name = dataset_id or os.path.basename(os.path.dirname(os.path.normpath(train_dir))) or "image folders"
    dataset = (f"[{dataset_id}](https://huggingface.co/datasets/{dataset_id})" if dataset_id
               else f"`{dataset_name}` (local image folders)")
    shown = _shown_metrics(len(class_names))
    pcfg = config.get("pretrained_cfg") or {}
    size = (pcfg.get("input_size") or [3, "?", "?"])[1:]
    values = {
        "card_data": _card_data(repo_name=repo_id.split("/")[-1], base=base, license_=license_, dataset_id=dataset_id,
                                dataset_name=dataset_name, metrics=metrics, shown=shown),
        "model_name": repo_id.split("/")[-1],
        "repo_id": repo_id,
        "architecture": config.get("architecture", "?"),
        "base_model": base["label"],
        "origin": base["origin"],
        "license": license_,
        "dataset": dataset,
        "split_sizes": _split_sizes(run_info, metrics),
        "num_classes": str(len(class_names)),
        "class_list": _class_list(class_names),
        "input_size": f"{size[0]}x{size[1]}",
        "preprocessing": f"resize ({pcfg.get('crop_mode', 'center')}, crop_pct {pcfg.get('crop_pct')}, "
                         f"{pcfg.get('interpolation')}) to {size[0]}x{size[1]}, normalise mean {pcfg.get('mean')} "
                         f"std {pcfg.get('std')}",
        "recipe_table": _recipe_table(cfg, run_info),
        "hardware": _hardware(run_info, output_dir),
        "metrics_table": _metrics_table(metrics, shown),
        "worst_classes": _worst_table(worst_split, worst) or "(No per-class report in the run folder.)",
        "figures": _figures(output_dir),
    }
    with open(template) as f:
        text = f.read()

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise ValueError(f"{template}: unknown placeholder {{{{ {m.group(1)} }}}}")
        return values[m.group(1)]

    card = re.sub(r"\{\{\s*(\w+)\s*\}\}", fill, text)
    if re.search(r"\{\{|\}\}", card):
        raise ValueError(f"{template}: unbalanced placeholder braces left after rendering")
    return card


# ----------------------------------------------------------------------------------------------------------------
# Uploading


def published_files(output_dir: str) -> list[str]:
    """Paths (relative, '/'-separated) under output_dir that go to the Hub, in PUBLISHED order."""
    found = []
    for root, _, files in os.walk(output_dir):
        rel_root = os.path.relpath(root, output_dir)
        if rel_root != "." and rel_root.split(os.sep)[0] != "report":
            continue  # checkpoints, runs/ (tensorboard): never published
        for name in files:
            rel = name if rel_root == "." else f"{rel_root.replace(os.sep, '/')}/{name}"
            if any(fnmatch.fnmatch(rel, pattern) for pattern in PUBLISHED):
                found.append(rel)
    order = {pattern: i for i, pattern in enumerate(PUBLISHED)}
    return sorted(found, key=lambda rel: (min(order[p] for p in PUBLISHED if fnmatch.fnmatch(rel, p)), rel))


def retry_command(output_dir: str, request: PushRequest) -> str:
    cmd = ["python", "publish.py", output_dir, "--repo_id", request.repo_id]
    if request.private:
        cmd.append("--private")
    if request.revision:
        cmd += ["--revision", request.revision]
    return " ".join(shlex.quote(c) for c in cmd)


@contextlib.contextmanager
def _client_timeout(seconds: float) -> Iterator[None]:
    """huggingface_hub's shared HTTP client has no timeout (a stalled server hangs forever): install one with a
    per-operation timeout for the push, and put the library's default back afterwards."""
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    def factory() -> httpx2.Client:
        return httpx2.Client(event_hooks={"request": [_http.hf_request_event_hook]}, follow_redirects=True,
                             timeout=httpx2.Timeout(seconds, connect=min(seconds, 10.0)))

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(_http.default_client_factory)


def _reason(err: Exception, *, repo_id: str, timeout: float) -> str:
    """One line for the usual failures; the library's own messages are multi-line."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    if isinstance(err, LocalTokenNotFoundError):
        return "no Hugging Face token (set HF_TOKEN or run `hf auth login`)"
    if isinstance(err, OfflineModeIsEnabled):
        return "offline mode is on (unset HF_HUB_OFFLINE)"
    if isinstance(err, httpx2.TimeoutException):
        return f"no answer from {constants.ENDPOINT} within {timeout:g} s (timeout)"
    if isinstance(err, httpx2.TransportError):
        return f"cannot reach {constants.ENDPOINT} ({type(err).__name__}; no network?)"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        what = {401: "the token was rejected (check HF_TOKEN or `hf auth login`)",
                403: f"the token may not write to {repo_id} (needs a write token, or membership of the org)",
                404: f"{repo_id} was not found or is not visible with this token"}.get(status)
        if what is None:
            what = "Hub server error" if status >= 500 else "request refused"
        return f"HTTP {status}: {what}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}"


def publish(output_dir: str, request: PushRequest, *, dataset_id: str | None = None, license_: str | None = None,
            base_model: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Render README.md into output_dir, then create the repo (if needed) and commit the published files in one
    commit. Unchanged files are skipped by huggingface_hub, so re-publishing the same run makes no new commit.
    Returns the commit URL. Raises PublishError (one line, with the retry command) on any failure."""
    from huggingface_hub import CommitOperationAdd, HfApi

    missing = [name for name in REQUIRED if not os.path.isfile(os.path.join(output_dir, name))]
    if missing:
        raise IncompleteRunError(f"{output_dir} is not a finished run (missing {', '.join(missing)}); "
                                 f"nothing was pushed")
    retry = retry_command(output_dir, request)
    api = HfApi()  # token: HF_TOKEN or the `hf auth login` file, looked up by huggingface_hub itself
    try:
        with _client_timeout(timeout):
            repo_id = request.repo_id
            if "/" not in repo_id:  # like the Trainer: a bare name goes to the token owner's namespace
                repo_id = f"{api.whoami()['name']}/{repo_id}"
            else:
                api.whoami()  # fails fast with 401 before anything is created
            card = render_card(output_dir, repo_id=repo_id, dataset_id=dataset_id, license_=license_,
                               base_model=base_model)
            with open(os.path.join(output_dir, "README.md"), "w") as f:
                f.write(card)
            # private=None (not False) when not asked: an org whose default is private keeps it
            api.create_repo(repo_id, private=True if request.private else None, exist_ok=True)
            if request.revision and request.revision != "main":
                api.create_branch(repo_id, branch=request.revision, exist_ok=True)
            operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=os.path.join(output_dir, rel))
                          for rel in published_files(output_dir)]
            info = api.create_commit(repo_id, operations=operations, revision=request.revision,
                                     commit_message=request.commit_message or default_commit_message(output_dir))
    except Exception as err:  # noqa: BLE001 - every failure must end in the same clear, retryable message
        reason = _reason(err, repo_id=request.repo_id, timeout=timeout)
        logger.debug("push failed", exc_info=True)
        raise PublishError(f"push to {request.repo_id} failed: {reason}. The run in {output_dir} is complete; "
                           f"push it later without retraining: {retry}") from None
    logger.info("published %s (%d files) at %s", repo_id, len(operations), info.commit_url)
    return info.commit_url
