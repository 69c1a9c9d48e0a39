"""Evaluation report without training: re-evaluate a saved model, rebuild a run's report, compare runs.

    # a saved model (run folder or Hub id) on any labeled folder -> report (metrics, per-class, confusion, images)
    python evaluate_model.py evaluate --model runs/r152 --data_dir data/val --output_dir runs/r152/report_val \
        --tta flip multicrop
    # N GPUs (or --use_cpu with several CPU processes): the same numbers, each image counted once
    accelerate launch --config_file accelerate_config.yaml evaluate_model.py evaluate --model runs/r152 ...
    # rebuild output_dir/report of a finished (or old) run from its trainer_state.json and saved predictions
    python evaluate_model.py report runs/r152
    # overlay the curves of several runs, side-by-side validation metrics (legend = run names)
    python evaluate_model.py compare runs/cosine runs/plateau --names cosine plateau --output_dir runs/compare

Test-time augmentation (--tta) averages softmax probabilities over views and is reported beside the plain result:
flip = plain + horizontal flip; multicrop = the 4 corner and centre crops of the image resized to
eval_size / crop_pct (crop_pct capped at 0.875 so the corners differ from the centre).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys

import numpy as np
import timm.data
import torch
from torchvision.transforms import v2
from transformers import AutoModelForImageClassification, TrainingArguments

from foldertune import data, report
from foldertune.config import ConfigError
from foldertune.trainer import ImageClassificationTrainer

logger = logging.getLogger("evaluate_model")

MULTICROP_MAX_CROP_PCT = 0.875  # resize to at least size / 0.875 so the five crops are different views


class FlipView:
    """The eval preset followed by a horizontal flip (tensor CHW)."""

    def __init__(self, preset):
        self.preset = preset

    def __call__(self, img):
        return torch.flip(self.preset(img), dims=[-1])


class CropView:
    """Resize the shorter side to `resize`, take crop `index` of torchvision's FiveCrop (corners, then centre)."""

    def __init__(self, *, size: int, resize: int, index: int, mean, std, interpolation: str):
        self.resize = v2.Compose([v2.ToImage(), v2.Resize(resize, interpolation=v2.InterpolationMode(interpolation),
                                                            antialias=True), v2.FiveCrop(size)])
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])
        self.index = index

    def __call__(self, img):
        return self.normalize(self.resize(img)[self.index])


def eval_views(*, tta: list[str], cfg: dict) -> dict[str, list]:
    """Named TTA variants -> their view transforms (the plain eval preset is always the first view of 'plain')."""
    plain = data.EvalPreset(size=cfg["input_size"][-1], mean=cfg["mean"], std=cfg["std"],
                            interpolation=cfg["interpolation"], crop_pct=cfg["crop_pct"],
                            crop_mode=cfg.get("crop_mode", "center"))
    views = {"plain": [plain]}
    if "flip" in tta:
        views["flip"] = [plain, FlipView(plain)]
    if "multicrop" in tta:
        size = cfg["input_size"][-1]
        resize = round(size / min(cfg["crop_pct"], MULTICROP_MAX_CROP_PCT))
        views["multicrop"] = [CropView(size=size, resize=resize, index=i, mean=cfg["mean"], std=cfg["std"],
                                       interpolation=cfg["interpolation"]) for i in range(5)]
    return views


def check_classes(folder_classes: list[str], model_classes: list[str], data_dir: str, model: str) -> None:
    """A folder may hold a subset of the model's classes; any other name means the wrong folder or model."""
    unknown = sorted(set(folder_classes) - set(model_classes))
    if unknown:
        raise ConfigError(f"data_dir '{data_dir}' has classes the model '{model}' does not know: {unknown}. "
                          f"Folder classes: {sorted(folder_classes)}. Model classes: {model_classes}")


def cmd_evaluate(args) -> dict:
    layout = data.scan_folder(args.data_dir, "data_dir")
    if not layout.labeled:
        raise ConfigError(f"data_dir '{args.data_dir}' holds flat images; evaluation needs one sub-folder per class")
    try:
        model = AutoModelForImageClassification.from_pretrained(args.model)
    except OSError as e:  # a wrong path, or a Hub id without network / not in the cache
        raise ConfigError(f"cannot load model '{args.model}': {str(e).splitlines()[0]}") from None
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    check_classes(list(layout.classes), class_names, args.data_dir, args.model)
    # Preprocessing from the saved model's pretrained_cfg: what validation and pipeline(...) use.
    cfg = timm.data.resolve_data_config(pretrained_cfg=model.config.pretrained_cfg or {}, use_test_size=False)
    cfg["crop_mode"] = (model.config.pretrained_cfg or {}).get("crop_mode", cfg.get("crop_mode", "center"))

    training_args = TrainingArguments(
        output_dir=args.output_dir, per_device_eval_batch_size=args.batch_size,  # predict() writes nothing there
        dataloader_num_workers=args.num_workers, use_cpu=args.use_cpu, bf16=args.bf16, report_to="none",
        eval_accumulation_steps=args.eval_accumulation_steps, remove_unused_columns=False, disable_tqdm=True)
    with training_args.main_process_first(desc="loading the image folder"):
        ds = data.load_split(layout, class_names)
    # The project's Trainer: it takes collate's list of unreadable images out of the batch (and keeps it)
    trainer = ImageClassificationTrainer(model=model, args=training_args, data_collator=data.collate)
    paths = data.image_paths(ds)

    results, plain = {}, None
    for name, views in eval_views(tta=args.tta, cfg=cfg).items():
        probs = 0.0
        for view in views:  # one pass per view; only (N, C) probabilities are kept, on the CPU
            # unreadable images stay as grey rows (scored, counted below) so rows match files one to one
            ds.set_transform(data.BatchTransform(view, strict=False, drop=False, fill_size=cfg["input_size"][-1]))
            out = trainer.predict(ds, metric_key_prefix="eval")
            probs = probs + report.softmax(out.predictions) / len(views)
            labels = out.label_ids
        if name == "plain":
            plain = report.SplitPredictions(logits=out.predictions, labels=labels, paths=paths)
        else:  # log-probabilities rank like the averaged probabilities: same argmax and top-5
            results[f"{args.split_name} + {name}"] = report.scalars(report.split_metrics(
                logits=np.log(np.clip(probs, 1e-12, None)), labels=labels))

    if not trainer.is_world_process_zero():
        return {}
    if trainer.bad_images:
        logger.warning("%d unreadable images were scored as grey images (counted as they were predicted): %s",
                       len(trainer.bad_images), sorted(trainer.bad_images)[:5])
    state = report.load_trainer_state(args.model) if os.path.isdir(args.model) else {}
    summary = report.write_report(args.output_dir, log_history=state.get("log_history", []),
                                  splits={args.split_name: plain}, class_names=class_names,
                                  best_step=state.get("best_global_step"), extra=results)
    print(f"report in {args.output_dir}\n\n{report.format_summary(summary)}")
    return summary


def cmd_report(args) -> dict:
    """Rebuild run_dir/report from trainer_state.json and the report's saved predictions_<split>.npz."""
    out_dir = args.output_dir or os.path.join(args.run_dir, "report")
    state = report.load_trainer_state(args.run_dir)
    splits, class_names = {}, []
    saved = sorted(glob.glob(os.path.join(args.run_dir, "report", "predictions_*.npz")),
                   key=lambda p: not p.endswith("predictions_validation.npz"))  # validation first in the table
    for path in saved:
        split = os.path.basename(path)[len("predictions_"):-len(".npz")]
        splits[split], class_names = report.load_predictions(path)
    if not splits:
        logger.warning("no saved predictions in %s/report (a run from before the report existed): only the curves; "
                       "for metrics run `evaluate_model.py evaluate --model %s --data_dir VALIDATION_FOLDER`",
                       args.run_dir, args.run_dir)
    summary = report.write_report(out_dir, log_history=state.get("log_history", []), splits=splits,
                                  class_names=class_names, best_step=state.get("best_global_step"))
    print(f"report in {out_dir}\n\n{report.format_summary(summary)}")
    return summary


def cmd_compare(args) -> str:
    names = args.names or [os.path.basename(os.path.normpath(d)) for d in args.run_dirs]
    if len(names) != len(args.run_dirs):
        raise ConfigError(f"--names has {len(names)} names for {len(args.run_dirs)} runs")
    missing = [d for d in args.run_dirs if not os.path.isdir(d)]
    if missing:
        raise ConfigError(f"not a run folder: {missing}")
    table = report.compare_runs(args.output_dir, run_dirs=dict(zip(names, args.run_dirs)))
    print(f"{os.path.join(args.output_dir, 'compare.png')}\n\n{table}")
    return table


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("evaluate", help="a saved model on a labeled folder -> report")
    p.add_argument("--model", required=True, help="run folder, local model folder or Hub id")
    p.add_argument("--data_dir", required=True, help="labeled folder: one sub-folder of images per class")
    p.add_argument("--output_dir", required=True, help="where the report goes")
    p.add_argument("--split_name", default="validation", help="name of this data in the report's tables")
    p.add_argument("--tta", nargs="*", default=[], choices=["flip", "multicrop"],
                   help="test-time augmentation variants reported beside the plain result")
    p.add_argument("--batch_size", type=int, default=64, help="per device")
    p.add_argument("--num_workers", type=int, default=2, help="dataloader workers per process")
    p.add_argument("--eval_accumulation_steps", type=int, default=16,
                   help="move gathered logits to the CPU every this many batches (accelerator memory)")
    p.add_argument("--use_cpu", action="store_true", help="run on CPU (also several CPU processes over gloo)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on the accelerator")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("report", help="rebuild RUN_DIR/report from trainer_state.json and saved predictions")
    p.add_argument("run_dir")
    p.add_argument("--output_dir", default=None, help="default RUN_DIR/report")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("compare", help="overlay the curves of several runs and tabulate their metrics")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--names", nargs="*", default=None, help="legend names (default: the folder names)")
    p.add_argument("--output_dir", required=True)
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None):
    args = make_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
