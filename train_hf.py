"""Fine-tune a timm image classifier on train/ val/ test/ image folders with the Hugging Face Trainer.

Inputs: class sub-folders of images (train, optional val), an optional test folder (flat or labeled), a recipe.
Outputs in output_dir: model.safetensors + config.json (loads with pipeline, AutoModel and timm), run_config.yaml,
all_results.json, predictions.csv for the test folder, trainer_state.json (log history), checkpoints.

    # CPU demo (digits, tiny model from scratch)
    python data_prep.py demo data/demo && python train_hf.py --config configs/demo.yaml
    # 1 GPU
    python train_hf.py --config configs/seed_resnet152.yaml --train_dir data/train --validation_dir data/val \
        --test_dir data/test --output_dir runs/r152
    # N GPUs on one machine (NCCL, bf16): see accelerate_config.yaml
    accelerate launch --config_file accelerate_config.yaml train_hf.py --config configs/seed_resnet152.yaml ...

Re-running the same command after an interruption resumes from the last complete checkpoint in output_dir.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object
from transformers import EarlyStoppingCallback, set_seed

from foldertune import data, model as modeling
from foldertune.config import ConfigError, parse_args, save_config
from foldertune import hub
from foldertune import report
from foldertune.metrics import ComputeMetrics
from foldertune.trainer import (ImageClassificationTrainer, PreemptionCallback, RankSeedCallback,
                                checkpoint_step, last_complete_checkpoint)

logger = logging.getLogger("train_hf")


def write_predictions(path: str, files: list[str], root: str, probs: np.ndarray, class_names: list[str],
                      top_k: int, labels: np.ndarray | None = None, unreadable: set[str] = frozenset()) -> None:
    """One row per image, in dataset order: file (relative to root), prediction, [label], top-k names and probs.
    Files that could not be decoded keep their row with an empty prediction."""
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1)[:, :k]
    header = ["file", "prediction", "confidence"] + (["label"] if labels is not None else [])
    header += [f"top{i + 1}_{kind}" for i in range(k) for kind in ("label", "prob")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, file in enumerate(files):
            readable = file not in unreadable
            row = [os.path.relpath(file, root) if root else file, class_names[order[i, 0]] if readable else "",
                   f"{probs[i, order[i, 0]]:.6f}" if readable else ""]
            if labels is not None:
                row.append(class_names[labels[i]])
            for j in order[i]:
                row += [class_names[j], f"{probs[i, j]:.6f}"] if readable else ["", ""]
            w.writerow(row)


def main(argv: list[str] | None = None) -> dict:
    # Parse the run configuration (dataclass defaults < --config YAML < CLI flags)
    data_args, model_args, training_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if training_args.should_log else logging.WARNING)
    # --push_to_hub is done by us after the final save (timm-layout model, report, our card); the Trainer's own push
    # would upload Trainer-format checkpoints and regenerate README.md, so the Trainer never sees the flag.
    push = hub.push_request_from_args(training_args)
    training_args.push_to_hub = False

    set_seed(training_args.seed)  # before the model is built: the new head (or whole random init) is seeded too

    # Check the image folders (or the saved dataset) before any model is built or any image decoded
    if data_args.dataset_name:  # `data_prep.py save/push` output: a folder of parquet or a Hub dataset id
        train_ds, val_ds, test_ds, class_names = data.load_saved_dataset(data_args.dataset_name)
        test_root, from_train = "", val_ds is None
    else:
        train_layout = data.scan_folder(data_args.train_dir, "train_dir")
        val_layout = data.scan_folder(data_args.validation_dir, "validation_dir") if data_args.validation_dir else None
        test_layout = data.scan_folder(data_args.test_dir, "test_dir") if data_args.test_dir else None
        class_names = data.check_layouts(train_layout, val_layout, test_layout)
        test_root, from_train = test_layout.root if test_layout else "", val_layout is None

    # Resolve preprocessing from the checkpoint (fails early, with a fix, if it cannot be loaded offline)
    base_config = modeling.load_base_config(model_args.model_name_or_path, model_args.pretrained)
    train_transform, eval_transform, dcfg = data.build_presets(data_args, base_config.pretrained_cfg or {})

    # Initialize our dataset (the main process builds the imagefolder cache first, the others reuse it)
    if not data_args.dataset_name:
        with training_args.main_process_first(desc="loading image folders"):
            train_ds = data.load_split(train_layout, class_names)
            val_ds = data.load_split(val_layout, class_names) if val_layout else None
            test_ds = data.load_split(test_layout, class_names) if test_layout else None
    if val_ds is None:
        train_ds, val_ds = data.split_train(train_ds, data_args.validation_split, training_args.seed)
        logger.info("no validation split: held out %d of train (stratified, seed %d)", len(val_ds),
                    training_args.seed)
    test_labeled = test_ds is not None and "label" in test_ds.features
    logger.info("%d classes, %d train, %d validation%s images", len(class_names), len(train_ds), len(val_ds),
                f", {len(test_ds)} test ({'labeled' if test_labeled else 'unlabeled'})" if test_ds else "")

    global_batch = training_args.per_device_train_batch_size * training_args.world_size
    if len(train_ds) < global_batch:  # incomplete train batches are dropped: there would be no step at all
        raise ConfigError(f"{len(train_ds)} training images are fewer than one batch ({global_batch} = "
                          f"per_device_train_batch_size x processes); lower per_device_train_batch_size")

    logger.info("%d processes, global batch %d (= %d per device x %d processes x %d accumulation)",
                training_args.world_size, global_batch * training_args.gradient_accumulation_steps,
                training_args.per_device_train_batch_size, training_args.world_size,
                training_args.gradient_accumulation_steps)

    decode = dict(strict=data_args.strict_images, allow_truncated=data_args.allow_truncated_images)
    train_ds.set_transform(data.BatchTransform(train_transform, drop=True, draft_size=train_transform.draft_size,
                                               **decode))
    for ds in (val_ds, test_ds):
        if ds is not None:  # unreadable eval images keep their row (grey) so outputs stay one row per file
            ds.set_transform(data.BatchTransform(eval_transform, drop=False, fill_size=dcfg["eval_size"], **decode))

    # Build the model: pretrained backbone, new Dropout -> Linear head with our label names
    model = modeling.build_model(model_args.model_name_or_path, pretrained=model_args.pretrained,
                                 class_names=class_names, drop_rate=model_args.drop_rate,
                                 drop_path_rate=model_args.drop_path_rate)
    modeling.set_serving_config(model, size=dcfg["eval_size"], mean=dcfg["mean"], std=dcfg["std"],
                                interpolation=dcfg["interpolation"], crop_pct=dcfg["crop_pct"],
                                crop_mode=dcfg["crop_mode"])
    if model_args.channels_last:
        model = model.to(memory_format=torch.channels_last)

    # Initialize our trainer
    preemption = PreemptionCallback()  # SIGTERM -> checkpoint at the next step boundary, exit 0
    callbacks = [preemption, RankSeedCallback()]
    if training_args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    compute_metrics = ComputeMetrics()
    if "tensorboard" in training_args.report_to:  # keep each evaluation's confusion matrix for its TB image
        compute_metrics = report.ConfusionRecorder(compute_metrics, num_classes=len(class_names))
    trainer = ImageClassificationTrainer(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=val_ds, data_collator=data.collate,
        compute_metrics=compute_metrics, callbacks=callbacks)
    if isinstance(compute_metrics, report.ConfusionRecorder):
        trainer.add_callback(report.ConfusionMatrixCallback(recorder=compute_metrics, class_names=class_names,
                                                            callback_handler=trainer.callback_handler))
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        save_config(os.path.join(training_args.output_dir, "run_config.yaml"), data_args, model_args, training_args)

    # Training (resumes from the last complete checkpoint in output_dir when there is one). Rank 0 chooses and
    # every rank takes its choice: ranks that judged on their own could start at different steps and hang.
    checkpoint = training_args.resume_from_checkpoint or last_complete_checkpoint(training_args.output_dir)
    checkpoint = broadcast_object_list([checkpoint])[0]
    if checkpoint:
        logger.info("resuming from %s (use a new output_dir to start over)", checkpoint)
    start_step = checkpoint_step(checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    if preemption.stopped_at is not None:
        logger.warning("stopped by SIGTERM at step %d; checkpoint saved in %s. Run the same command again to resume.",
                       preemption.stopped_at, training_args.output_dir)
        return {"preempted_at_step": preemption.stopped_at}
    results = {}
    train_results_file = os.path.join(training_args.output_dir, "train_results.json")
    if trainer.state.global_step == start_step and os.path.isfile(train_results_file):
        # Re-run of a finished run: nothing was trained now, so keep the real training metrics on disk.
        with open(train_results_file) as f:
            train_result.metrics.update(json.load(f))
    elif torch.cuda.is_available():  # per process; the largest batch-size lever on a GPU
        train_result.metrics["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    results.update(train_result.metrics)

    # Save the model in timm's layout (loads in transformers, pipeline and timm) and the log history first:
    # nothing after this point can lose the trained weights.
    if trainer.is_world_process_zero():
        modeling.save_pretrained_timm(trainer.model, training_args.output_dir)
        trainer.save_state()

    # Evaluation of the final (best) model on the validation set
    val_out = trainer.predict(val_ds, metric_key_prefix="eval")
    val_out.metrics["eval_samples"] = len(val_out.predictions)  # gathered: each image exactly once
    trainer.log_metrics("eval", val_out.metrics)
    trainer.save_metrics("eval", val_out.metrics)
    results.update(val_out.metrics)

    # Predictions for the test folder (labeled: test metrics too). Gathered: one row per image, dataset order.
    test_out = trainer.predict(test_ds, metric_key_prefix="test") if test_ds is not None else None
    # Unreadable images met by any process (collective: every rank calls it); listed in bad_images.txt
    bad_images = sorted(set(gather_object(sorted(trainer.bad_images))))
    if test_out is not None:
        test_out.metrics["test_samples"] = len(test_out.predictions)
        probs = torch.softmax(torch.from_numpy(test_out.predictions).float(), dim=-1).numpy()
        if trainer.is_world_process_zero():
            write_predictions(os.path.join(training_args.output_dir, "predictions.csv"), data.image_paths(test_ds),
                              test_root, probs, class_names, data_args.top_k,
                              test_out.label_ids if test_labeled else None,
                              unreadable=set(bad_images))
        if test_labeled:
            trainer.log_metrics("test", test_out.metrics)
            trainer.save_metrics("test", test_out.metrics)
            results.update(test_out.metrics)

    results["unreadable_images"] = len(bad_images)
    if bad_images and trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "bad_images.txt"), "w") as f:
            f.write("\n".join(bad_images) + "\n")
        logger.warning("%d unreadable images were skipped (training) or not scored (evaluation); list in %s",
                       len(bad_images), os.path.join(training_args.output_dir, "bad_images.txt"))

    # Evaluation report in output_dir/report: metrics table, per-class CSV, confusion matrix, curves, mistakes
    report_splits = {"validation": report.SplitPredictions(
        logits=val_out.predictions, labels=val_out.label_ids, paths=data.image_paths(val_ds))}
    if test_labeled:
        report_splits["test"] = report.SplitPredictions(
            logits=test_out.predictions, labels=test_out.label_ids, paths=data.image_paths(test_ds))
    if trainer.is_world_process_zero():
        report_dir = os.path.join(training_args.output_dir, "report")
        summary = report.write_report(report_dir, log_history=trainer.state.log_history, splits=report_splits,
                                      class_names=class_names, best_step=trainer.state.best_global_step)
        logger.info("evaluation report in %s\n\n%s\n", report_dir, report.format_summary(summary))

    if trainer.is_world_process_zero():
        splits = {"train": len(train_ds), "validation": len(val_ds)} | ({"test": len(test_ds)} if test_ds else {})
        hub.write_run_info(training_args.output_dir, splits=splits, world_size=training_args.world_size,
                           test_labeled=test_labeled if test_ds is not None else None,
                           hardware=hub.describe_hardware(training_args.world_size),
                           validation_from_train=from_train, resumed_from=checkpoint)
    trainer.accelerator.wait_for_everyone()

    # Publish (main process only, once, after everything is on disk): raises PublishError with the retry command
    if push is not None and trainer.is_world_process_zero():
        results["hub_commit_url"] = hub.publish(training_args.output_dir, push)
    return results


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except hub.PublishError as e:  # the run itself is complete; only the upload is left to retry
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
