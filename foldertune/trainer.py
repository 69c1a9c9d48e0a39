"""The HF Trainer with per-epoch LR schedules (PyTorch semantics) and training accuracy logged for free.

PyTorch recipes step their scheduler once per epoch; the Trainer steps per optimizer step. `epoch_lr_factor`
gives PyTorch's closed form evaluated at epoch = step // steps_per_epoch, so the LR is constant within an epoch
and follows CosineAnnealingLR / CosineAnnealingWarmRestarts / StepLR across epochs (checked in tests against
those schedulers).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau
from transformers import Trainer, TrainerCallback, set_seed

logger = logging.getLogger(__name__)


def epoch_lr_factor(epoch: int, *, schedule: str, t_max: float, t_mult: int, min_lr_ratio: float,
                    step_size: int, gamma: float) -> float:
    """LR multiplier for a whole epoch (0-based), as PyTorch's schedulers give after `epoch` calls to step()."""
    if schedule == "cosine":  # CosineAnnealingLR: keeps following the cosine past T_max (the LR rises again)
        return min_lr_ratio + (1 - min_lr_ratio) * (1 + math.cos(math.pi * epoch / t_max)) / 2
    if schedule == "cosine_restarts":  # CosineAnnealingWarmRestarts(T_0=t_max, T_mult=t_mult)
        if t_mult == 1:
            t_cur, t_i = epoch % t_max, t_max
        else:
            n = int(math.log(epoch / t_max * (t_mult - 1) + 1, t_mult))
            t_cur, t_i = epoch - t_max * (t_mult**n - 1) / (t_mult - 1), t_max * t_mult**n
        return min_lr_ratio + (1 - min_lr_ratio) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
    if schedule == "step":  # StepLR
        return gamma ** (epoch // step_size)
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown lr_schedule {schedule!r}")


def _step_factor(step: int, *, steps_per_epoch: int, warmup_steps: int, **epoch_kwargs) -> float:
    warmup = step / warmup_steps if step < warmup_steps else 1.0  # linear warmup per step, as HF's schedules
    return warmup * epoch_lr_factor(step // steps_per_epoch, **epoch_kwargs)


class ImageClassificationTrainer(Trainer):
    """Trainer + per-epoch schedules + `train_accuracy` in the logs (counted on the training batches as they go,
    with augmentation and dropout on: no second pass over the data)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._train_correct = torch.zeros((), dtype=torch.long)
        self._train_seen = torch.zeros((), dtype=torch.long)
        self.bad_images: set[str] = set()  # unreadable files met on this process (collate's `bad_images`)

    def get_train_dataloader(self):
        # Drop the incomplete last training batch (as timm does): a batch of 1 breaks BatchNorm and adds noise.
        # The Trainer applies dataloader_drop_last to evaluation too, which would lose images, so only here.
        keep = self.args.dataloader_drop_last
        self.args.dataloader_drop_last = True
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = keep

    # --- schedule -------------------------------------------------------------------------------------------
    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self.steps_per_epoch = values[1]  # optimizer steps per epoch, as the Trainer itself counts them
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        args = self.args
        if self.lr_scheduler is not None or args.lr_schedule == "hf":
            return super().create_scheduler(num_training_steps, optimizer)
        optimizer = optimizer or self.optimizer
        if args.lr_schedule == "plateau":
            # The Trainer steps a ReduceLROnPlateau itself after each evaluation, on metric_for_best_model.
            self.lr_scheduler = ReduceLROnPlateau(
                optimizer, mode="max" if args.greater_is_better else "min",
                factor=args.plateau_factor, patience=args.plateau_patience)
        else:
            t_max = args.t_max_epochs or args.num_train_epochs
            self.lr_scheduler = LambdaLR(optimizer, partial(
                _step_factor, steps_per_epoch=self.steps_per_epoch,
                warmup_steps=args.get_warmup_steps(num_training_steps), schedule=args.lr_schedule, t_max=t_max,
                t_mult=args.t_mult, min_lr_ratio=args.min_lr / args.learning_rate,
                step_size=args.step_size_epochs, gamma=args.gamma))
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # --- training accuracy ----------------------------------------------------------------------------------
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        self.bad_images.update(inputs.pop("bad_images", ()))
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.bad_images.update(inputs.pop("bad_images", ()))
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and "labels" in inputs:
            with torch.no_grad():
                correct = (outputs.logits.argmax(-1) == inputs["labels"]).sum()
            self._train_correct = self._train_correct.to(correct.device) + correct
            self._train_seen = self._train_seen.to(correct.device) + inputs["labels"].numel()
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: every rank gets here together
            counts = torch.stack([self._train_correct, self._train_seen]).to(self.args.device)
            counts = self.accelerator.reduce(counts, reduction="sum")
            if counts[1] > 0:
                logs["train_accuracy"] = round(counts[0].item() / counts[1].item(), 4)
            self._train_correct = torch.zeros_like(self._train_correct)
            self._train_seen = torch.zeros_like(self._train_seen)
        super().log(logs, start_time)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint-N that finished saving. The Trainer writes the model, optimizer, scheduler and RNG
    state first and trainer_state.json last, so a parseable trainer_state.json plus the weights marks a complete
    one; a folder cut short by a kill is skipped (and reported)."""
    if not os.path.isdir(output_dir):
        return None
    found = []
    for name in os.listdir(output_dir):
        m = re.fullmatch(r"checkpoint-(\d+)", name)
        if m and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(m.group(1)), os.path.join(output_dir, name)))
    for step, path in sorted(found, reverse=True):
        try:
            with open(os.path.join(path, "trainer_state.json")) as f:
                json.load(f)
            complete = os.path.isfile(os.path.join(path, "model.safetensors"))  # optimizer.pt is optional
            # (save_only_model); everything the Trainer writes comes before trainer_state.json
        except (OSError, ValueError):
            complete = False
        if complete:
            return path
        logger.warning("ignoring incomplete checkpoint %s (interrupted while saving)", path)
    return None


class PreemptionCallback(TrainerCallback):
    """SIGTERM (SLURM, spot instances, `kill`): finish the current optimizer step, save a checkpoint, stop.

    Under several processes the flag is all-reduced every CHECK_EVERY optimizer steps (the same steps on every
    rank) so that all ranks stop at the same step and save together, without a host sync on every step."""

    CHECK_EVERY = 10  # optimizer steps; a stop waits at most this many steps

    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        if not self.requested:
            logger.warning("SIGTERM received: saving a checkpoint at the end of this step, then stopping")
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs):
        flag = self.requested
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if state.global_step % self.CHECK_EVERY and state.global_step < state.max_steps:
                return control
            t = torch.tensor([1.0 if flag else 0.0], device=args.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        if flag:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


class RankSeedCallback(TrainerCallback):
    """The Trainer seeds every process alike, so with in-process data loading (num_workers=0) all ranks would
    draw the same crop/flip/jitter parameters. Offset the seed by rank: different per process, reproducible."""

    def on_train_begin(self, args, state, control, **kwargs):
        if args.world_size > 1:
            set_seed(args.seed + args.process_index)


def checkpoint_step(checkpoint: str | None) -> int:
    """The optimizer step a checkpoint was saved at (0 without one)."""
    m = re.search(r"checkpoint-(\d+)$", str(checkpoint or "").rstrip("/"))
    return int(m.group(1)) if m else 0
