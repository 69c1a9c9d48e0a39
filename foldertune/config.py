"""Run configuration: argument dataclasses, `--config recipe.yaml` < CLI precedence, and the saved resolved config.

Defaults live in the dataclasses below, a recipe (configs/*.yaml) overrides them, CLI flags override the recipe.
The YAML is flat (the same keys as the CLI flags) so `output_dir/run_config.yaml` can be passed back as `--config`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments


class ConfigError(ValueError):
    """A user-facing configuration or input problem; its message is one line saying what to fix."""


@dataclass
class DataArguments:
    """Where the images are and how they are turned into tensors (torchvision v2 presets in data.py)."""

    train_dir: str | None = field(default=None, metadata={"help": "Folder of class sub-folders (one per label)."})
    validation_dir: str | None = field(
        default=None, metadata={"help": "Labeled folder like train_dir; without it a stratified split of train."}
    )
    test_dir: str | None = field(
        default=None, metadata={"help": "Folder to predict: flat images (unlabeled) or class sub-folders (labeled)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Instead of folders: a dataset saved or pushed by `data_prep.py save/push` "
                                        "(local folder or Hub id) with splits train[/validation/test]."}
    )
    validation_split: float = field(
        default=0.1, metadata={"help": "Fraction of train held out per class when there is no validation_dir."}
    )
    strict_images: bool = field(
        default=False,
        metadata={"help": "Fail on the first unreadable image instead of skipping it and counting it."},
    )
    allow_truncated_images: bool = field(
        default=False, metadata={"help": "Decode truncated JPEGs (grey-filled at the cut) instead of skipping them."}
    )
    # --- train preset (torchvision v2): crop, then flip/colour/geometry, then normalise, then erasing ---
    image_size: int = field(default=224, metadata={"help": "Square train crop side in pixels."})
    train_crop: str = field(
        default="random_resized",
        metadata={"help": "random_resized (RandomResizedCrop) or center (Resize(train_resize) -> CenterCrop).",
                  "choices": ["random_resized", "center"]},
    )
    train_resize: list[int] = field(
        default_factory=list,
        metadata={"help": "Resize before the center crop: one int (shorter side) or H W. Empty: no resize."},
    )
    rrc_scale: list[float] = field(
        default_factory=lambda: [0.08, 1.0], metadata={"help": "RandomResizedCrop area fraction range."}
    )
    hflip: float = field(default=0.5, metadata={"help": "Horizontal flip probability."})
    color_jitter: list[float] = field(
        default_factory=list, metadata={"help": "brightness contrast saturation hue for ColorJitter. Empty: off."}
    )
    translate: list[float] = field(
        default_factory=list, metadata={"help": "RandomAffine max translation, fraction of width and height."}
    )
    rotation: float = field(default=0.0, metadata={"help": "RandomRotation max degrees (0: off)."})
    random_erasing: float = field(default=0.0, metadata={"help": "RandomErasing probability (0: off)."})
    warp_interpolation: str = field(
        default="nearest", metadata={"help": "Interpolation of translate/rotation: nearest (torchvision's default, "
                                             "~5x faster at 512 px) or bilinear (smoother).",
                                     "choices": ["nearest", "bilinear"]})
    # --- eval preset: the same one the saved model serves with (timm's eval transform from pretrained_cfg) ---
    eval_size: int | None = field(default=None, metadata={"help": "Eval input side; default image_size."})
    eval_crop_pct: float | None = field(
        default=None, metadata={"help": "Eval resize = eval_size / crop_pct, then crop. Default: the checkpoint's."}
    )
    eval_crop_mode: str = field(
        default="center",
        metadata={"help": "center: resize shorter side then crop; squash: resize both sides (the seed's "
                          "Resize((512, 512)) is squash with crop_pct 1.0); border: pad to square.",
                  "choices": ["center", "squash", "border"]},
    )
    # --- normalisation: empty means the checkpoint's pretrained_cfg ---
    image_mean: list[float] = field(default_factory=list, metadata={"help": "Per-channel mean; default checkpoint's."})
    image_std: list[float] = field(default_factory=list, metadata={"help": "Per-channel std; default checkpoint's."})
    interpolation: str | None = field(
        default=None, metadata={"help": "bilinear or bicubic; default the checkpoint's.",
                                "choices": [None, "bilinear", "bicubic", "nearest"]}
    )
    top_k: int = field(default=5, metadata={"help": "Top-k names and probabilities written per test image."})


@dataclass
class ModelArguments:
    """Which timm backbone, and how its head is built."""

    model_name_or_path: str = field(
        default="timm/resnet152.tv2_in1k",
        metadata={"help": "Hub id (timm/...), local folder in Hub layout, or with pretrained=false a timm "
                          "architecture name (resnet18, test_resnet)."},
    )
    pretrained: bool = field(default=True, metadata={"help": "Load the checkpoint's weights (false: random init)."})
    drop_rate: float = field(default=0.0, metadata={"help": "Dropout before the classifier (timm drop_rate)."})
    drop_path_rate: float = field(default=0.0, metadata={"help": "Stochastic depth rate (0: off)."})
    channels_last: bool = field(default=False, metadata={"help": "NHWC memory format (faster convs on GPUs)."})


LR_SCHEDULES = ["cosine", "cosine_restarts", "step", "plateau", "constant", "hf"]


@dataclass
class FinetuneTrainingArguments(TrainingArguments):
    """HF TrainingArguments with image-classification defaults and per-epoch LR schedules as in PyTorch."""

    # Defaults that differ from TrainingArguments' (each one a trap for this task otherwise).
    output_dir: str | None = field(default=None, metadata={"help": "Where the model, report and checkpoints go."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate (epoch, steps, no)."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint (epoch, steps, best, no)."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log (epoch, steps)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay false with set_transform."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best checkpoint's weights."})
    metric_for_best_model: str | None = field(default="accuracy", metadata={"help": "Metric that picks the best."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best is always kept)."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "tensorboard, trackio, ... or none."})
    # Gathered logits move to the CPU every this many eval batches instead of piling up on the accelerator
    # (the Trainer's default keeps all of them there until the end: N images x C classes x 4 bytes).
    eval_accumulation_steps: int | None = field(
        default=16, metadata={"help": "Eval batches whose logits are held on the accelerator before moving to CPU."})
    lr_scheduler_type: str = field(
        default="constant", metadata={"help": "Only used with lr_schedule=hf (HF per-step schedules)."}
    )
    # Per-epoch schedules: the LR is constant within an epoch and changes at epoch boundaries, as when
    # PyTorch's scheduler.step() is called once per epoch. Warmup (warmup_steps) multiplies it per step.
    lr_schedule: str = field(
        default="cosine", metadata={"help": "Per-epoch schedule, as PyTorch's; hf = use lr_scheduler_type.",
                                    "choices": LR_SCHEDULES}
    )
    t_max_epochs: float = field(
        default=0, metadata={"help": "cosine: CosineAnnealingLR T_max in epochs (0: num_train_epochs). The LR "
                                     "rises again after T_max. cosine_restarts: T_0."}
    )
    t_mult: int = field(default=1, metadata={"help": "cosine_restarts: period multiplier (CosineAnnealingWarmRestarts)."})
    min_lr: float = field(default=0.0, metadata={"help": "cosine: eta_min, absolute LR."})
    step_size_epochs: int = field(default=30, metadata={"help": "step: StepLR step_size in epochs."})
    gamma: float = field(default=0.1, metadata={"help": "step: LR factor every step_size_epochs."})
    plateau_factor: float = field(default=0.1, metadata={"help": "plateau: LR factor when the metric stalls."})
    plateau_patience: int = field(default=5, metadata={"help": "plateau: evaluations without improvement."})
    early_stopping_patience: int = field(default=0, metadata={"help": "Stop after this many evals without gain (0: off)."})


ARGUMENT_CLASSES = (DataArguments, ModelArguments, FinetuneTrainingArguments)
# Never written to run_config.yaml (secrets) nor accepted from a recipe file.
SECRET_KEYS = {"hub_token"}


def _yaml_to_argv(cfg: dict, known: set[str], source: str) -> tuple[list[str], dict]:
    """Turn flat YAML keys into CLI tokens, so argparse type-checks them exactly like flags. Nulls become defaults."""
    argv, nulls = [], {}
    for key, value in cfg.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{key}' (not an option of train_hf.py; see --help)")
        if key in SECRET_KEYS:
            raise ConfigError(f"{source}: '{key}' must not be in a file; use `hf auth login` or HF_TOKEN")
        if value is None:
            nulls[key] = None
        elif isinstance(value, list):
            argv += [f"--{key}", *map(str, value)] if value else []
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv, nulls


class _RaisingParser(HfArgumentParser):
    """argparse prints usage and exits on errors; we turn them into ConfigError (one line, testable)."""

    def error(self, message):
        raise ConfigError(message)


def parse_args(argv: list[str] | None = None) -> tuple[DataArguments, ModelArguments, FinetuneTrainingArguments]:
    """`--config file.yaml` gives defaults, CLI flags win. Unknown keys and wrong types raise ConfigError."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _RaisingParser(ARGUMENT_CLASSES)
    yaml_argv: list[str] = []
    argv = [a for arg in argv for a in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ConfigError("--config needs a YAML file path")
        path = argv[i + 1]
        del argv[i : i + 2]
        if not os.path.isfile(path):
            raise ConfigError(f"--config {path}: file not found")
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
        if not isinstance(cfg, dict):
            raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
        known = {a.dest for a in parser._actions}
        yaml_argv, nulls = _yaml_to_argv(cfg, known, path)
        parser.set_defaults(**nulls)
        try:  # parse the file alone first so a bad value is reported against the file
            parser.parse_args_into_dataclasses(yaml_argv, look_for_args_file=False)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        except ValueError as e:  # raised by a dataclass __post_init__ (e.g. TrainingArguments' checks)
            raise ConfigError(f"{path}: {e}".splitlines()[0]) from None
    try:
        data_args, model_args, training_args = parser.parse_args_into_dataclasses(
            yaml_argv + argv, look_for_args_file=False
        )
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    validate(data_args, model_args, training_args)
    return data_args, model_args, training_args


def validate(data_args: DataArguments, model_args: ModelArguments, args: FinetuneTrainingArguments) -> None:
    """Cross-field checks that argparse cannot do. Each raises one line saying how to fix it."""
    if not args.output_dir:
        raise ConfigError("output_dir is required (--output_dir runs/NAME)")
    if not data_args.train_dir and not data_args.dataset_name:
        raise ConfigError("train_dir is required (--train_dir path/to/train), or dataset_name for a saved dataset")
    if data_args.dataset_name and (data_args.train_dir or data_args.validation_dir or data_args.test_dir):
        raise ConfigError("give either dataset_name or train_dir/validation_dir/test_dir, not both")
    if args.hub_token:  # it would land in shell history, checkpoints' training_args.bin and logs
        raise ConfigError("do not pass --hub_token; set HF_TOKEN in the environment or run `hf auth login`")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not args.use_cpu and not torch.cuda.is_available():
        # Without it each process trains alone on the full data (the Trainer only warns).
        raise ConfigError("several processes but no GPU: add --use_cpu true to run DDP over gloo on CPU")
    if args.optim == "sgd" and "momentum" not in (args.optim_args or ""):
        raise ConfigError("optim=sgd without momentum in optim_args runs plain SGD (momentum 0); "
                          "set optim_args: 'momentum=0.9' (or 'momentum=0' if you mean it)")
    if args.lr_schedule == "plateau" and args.eval_strategy == "no":
        raise ConfigError("lr_schedule=plateau steps on the validation metric; set eval_strategy to epoch")
    if args.lr_schedule == "plateau" and (args.warmup_steps or 0) > 0:
        raise ConfigError("lr_schedule=plateau does not combine with warmup_steps; set warmup_steps: 0")
    if args.lr_schedule != "hf" and args.lr_scheduler_type not in ("constant", "SchedulerType.CONSTANT"):
        raise ConfigError(f"lr_scheduler_type={args.lr_scheduler_type} is only used with lr_schedule=hf; "
                          f"set one or the other")
    if args.load_best_model_at_end and args.eval_strategy == "no":
        raise ConfigError("load_best_model_at_end needs evaluation; set eval_strategy: epoch or "
                          "load_best_model_at_end: false")
    for name in ("image_mean", "image_std"):
        if getattr(data_args, name) and len(getattr(data_args, name)) != 3:
            raise ConfigError(f"{name} needs 3 values (R G B), got {getattr(data_args, name)}")
    if data_args.color_jitter and len(data_args.color_jitter) != 4:
        raise ConfigError("color_jitter needs 4 values: brightness contrast saturation hue")
    if data_args.translate and len(data_args.translate) != 2:
        raise ConfigError("translate needs 2 values: max fraction of width and of height")
    if len(data_args.train_resize) > 2:
        raise ConfigError("train_resize takes 1 value (shorter side) or 2 (height width)")
    if data_args.top_k < 1:
        raise ConfigError(f"top_k must be >= 1 (predictions.csv columns), got {data_args.top_k}")
    if not 0.0 < data_args.validation_split < 1.0:
        raise ConfigError(f"validation_split must be in (0, 1), got {data_args.validation_split}")
    if not 0.0 <= model_args.drop_rate < 1.0:
        raise ConfigError(f"drop_rate must be in [0, 1), got {model_args.drop_rate}")


def resolved_config(*arg_objects) -> dict:
    """One flat dict of every option (the CLI's keys), secrets removed; loadable back with --config."""
    out = {}
    for obj in arg_objects:
        d = obj.to_dict() if isinstance(obj, TrainingArguments) else dataclasses.asdict(obj)
        names = {f.name for f in dataclasses.fields(obj) if f.init}
        out.update({k: v for k, v in d.items() if k in names and k not in SECRET_KEYS})
        # Precision set by `accelerate launch` (mixed_precision in accelerate_config.yaml) is recorded as the flag,
        # so passing this file back with --config, even without accelerate, trains in the same precision.
        if getattr(obj, "mixed_precision", "no") in ("bf16", "fp16"):
            out[obj.mixed_precision] = True
    return out


def save_config(path: str, *arg_objects) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(resolved_config(*arg_objects), f, sort_keys=False)
