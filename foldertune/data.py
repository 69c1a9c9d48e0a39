"""Image folders -> `datasets` splits -> tensors.

Layout checks run on the file tree before anything is decoded, so a bad folder fails in seconds with one line.
Labels are class folder names kept as strings end to end; ids follow the train split's (string-sorted) names.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import datasets
import timm.data
import torch
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from PIL import Image, ImageFile, ImageOps
from torchvision.transforms import v2

from .config import ConfigError

logger = logging.getLogger(__name__)

# The extensions the `imagefolder` loader picks up, so our checks see exactly the files training will read.
IMAGE_EXTENSIONS = frozenset(ImageFolder.EXTENSIONS)


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass
class FolderLayout:
    """What a split folder holds: class name -> image paths (labeled), or a flat list of images (unlabeled)."""

    root: str
    classes: dict[str, list[str]] = field(default_factory=dict)
    flat: list[str] = field(default_factory=list)

    @property
    def labeled(self) -> bool:
        return bool(self.classes)

    @property
    def num_images(self) -> int:
        return sum(map(len, self.classes.values())) + len(self.flat)


def scan_folder(root: str, role: str) -> FolderLayout:
    """Read the layout of one split folder; raise ConfigError for anything training would trip on later."""
    if not os.path.isdir(root):
        raise ConfigError(f"{role} '{root}' does not exist or is not a folder")
    layout = FolderLayout(root=root)
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files, nested = [], []
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if sub.is_dir() and not sub.name.startswith("."):
                    nested.append(sub.name)
                elif sub.is_file() and is_image_file(sub.name):
                    files.append(sub.path)
            if nested:
                raise ConfigError(f"{role} '{root}': class folder '{entry.name}' has sub-folders ({nested[0]}, ...); "
                                  f"put the images directly in one folder per class")
            if not files:
                raise ConfigError(f"{role} '{root}': class folder '{entry.name}' has no images; remove it or add "
                                  f"images ({', '.join(sorted(IMAGE_EXTENSIONS & {'.jpg', '.png', '.webp'}))}, ...)")
            layout.classes[entry.name] = files
        elif entry.is_file() and is_image_file(entry.name):
            layout.flat.append(entry.path)
    if layout.classes and layout.flat:
        raise ConfigError(f"{role} '{root}' mixes images at the top ({os.path.basename(layout.flat[0])}, ...) with "
                          f"class folders; use either one folder per class or only flat images")
    if not layout.num_images:
        raise ConfigError(f"{role} '{root}' has no images (expected one sub-folder of images per class)")
    return layout


def check_layouts(train: FolderLayout, validation: FolderLayout | None, test: FolderLayout | None) -> list[str]:
    """Class names (sorted as strings, as `imagefolder` does) after checking the splits agree."""
    if not train.labeled:
        raise ConfigError(f"train_dir '{train.root}' holds flat images; training needs one sub-folder per class")
    names = sorted(train.classes)
    if len(names) < 2:
        raise ConfigError(f"train_dir '{train.root}' has {len(names)} class; a classifier needs at least 2")
    for role, layout in (("validation_dir", validation), ("test_dir", test)):
        if layout is None:
            continue
        if role == "validation_dir" and not layout.labeled:
            raise ConfigError(f"validation_dir '{layout.root}' holds flat images; it needs one sub-folder per class")
        unknown = sorted(set(layout.classes) - set(names))
        if unknown:
            raise ConfigError(f"{role} '{layout.root}' has classes that train_dir does not: {unknown[:10]}"
                              f"{' ...' if len(unknown) > 10 else ''}; train classes: {names[:10]}"
                              f"{' ...' if len(names) > 10 else ''}")
    return names


def load_split(layout: FolderLayout, class_names: list[str]) -> datasets.Dataset:
    """One folder through `imagefolder`, loaded on its own (a flat test folder beside labeled ones would drop the
    label column of every split). Columns: image (path, decoded lazily by our transform), label (train's ids)."""
    ds = datasets.load_dataset("imagefolder", data_dir=layout.root, split="train")
    ds = ds.cast_column("image", datasets.Image(decode=False))
    if layout.labeled:
        # Map through names: this folder's own ids follow its own sorted class list, not train's.
        local_names = ds.features["label"].names
        to_train = [class_names.index(n) for n in local_names]
        features = ds.features.copy()
        features["label"] = datasets.ClassLabel(names=class_names)
        ds = ds.map(lambda b: {"label": [to_train[i] for i in b["label"]]}, batched=True, features=features)
    expected = layout.num_images
    if len(ds) != expected:  # the loader and our scan must agree on which files exist
        raise RuntimeError(f"imagefolder read {len(ds)} images from {layout.root}, the folder scan found {expected}")
    return ds


def split_train(ds: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Seeded split that keeps each class's proportion (for runs without a validation folder)."""
    parts = ds.train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    return parts["train"], parts["test"]


def image_paths(ds: datasets.Dataset) -> list[str]:
    return [item["path"] for item in ds.with_format(None)["image"]]  # without the set_transform hook


# ----------------------------------------------------------------------------------------------------------------
# Decoding

# Refuse images over this many pixels (PIL raises DecompressionBombError at 2x): 16k x 16k is a real photo's limit.
Image.MAX_IMAGE_PIXELS = 16384 * 16384


def open_rgb(path: str) -> Image.Image:
    """Decode any PIL mode to RGB the way a person would see it: EXIF rotation applied, transparency on white,
    16-bit scaled down (convert('RGB') would clip it to white)."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            im = im.point(lambda v: v / 256).convert("L")
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, im)
        return im.convert("RGB")


# ----------------------------------------------------------------------------------------------------------------
# Transform presets (torchvision references/classification/presets.py style: keyword arguments are the knobs)


class TrainPreset:
    def __init__(
        self,
        *,
        size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        interpolation: str = "bilinear",
        crop: str = "random_resized",
        resize: tuple[int, ...] = (),
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        color_jitter: tuple[float, ...] = (),
        translate: tuple[float, ...] = (),
        rotation: float = 0.0,
        random_erasing: float = 0.0,
    ):
        interp = v2.InterpolationMode(interpolation)
        t: list = [v2.ToImage()]  # PIL -> uint8 CHW tensor; geometry and colour ops below run on uint8
        if crop == "random_resized":
            t.append(v2.RandomResizedCrop(size, scale=tuple(rrc_scale), interpolation=interp, antialias=True))
        else:
            if resize:
                t.append(v2.Resize(resize[0] if len(resize) == 1 else tuple(resize), interpolation=interp, antialias=True))
            t.append(v2.CenterCrop(size))
        if hflip > 0:
            t.append(v2.RandomHorizontalFlip(hflip))
        if color_jitter:
            t.append(v2.ColorJitter(*color_jitter))
        # Affine warps on tensors support nearest/bilinear only; bilinear is what the seed's defaults used.
        if translate:
            t.append(v2.RandomAffine(degrees=0, translate=tuple(translate), interpolation=v2.InterpolationMode.BILINEAR))
        if rotation > 0:
            t.append(v2.RandomRotation(rotation, interpolation=v2.InterpolationMode.BILINEAR))
        t += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
        if random_erasing > 0:
            t.append(v2.RandomErasing(p=random_erasing))
        self.transforms = v2.Compose(t)

    def __call__(self, img):
        return self.transforms(img)


class EvalPreset:
    """timm's eval transform built from the same values the saved model's pretrained_cfg carries, so validation
    here and `pipeline(...)` on the published model preprocess identically."""

    def __init__(self, *, size: int, mean, std, interpolation: str, crop_pct: float, crop_mode: str):
        self.transforms = timm.data.create_transform(
            input_size=(3, size, size), interpolation=interpolation, mean=tuple(mean), std=tuple(std),
            crop_pct=crop_pct, crop_mode=crop_mode, is_training=False,
        )

    def __call__(self, img):
        return self.transforms(img)


class BatchTransform:
    """`Dataset.set_transform` hook: decode by path, apply a preset. A picklable class (dataloader workers).

    An unreadable image raises with its path when strict; otherwise it becomes None and `collate` drops it
    (training only: evaluation must see every image)."""

    def __init__(self, transform, skip_bad: bool):
        self.transform = transform
        self.skip_bad = skip_bad

    def __call__(self, batch: dict) -> dict:
        pixels = []
        for item in batch["image"]:
            try:  # only decoding is guarded: a bug in a transform must fail loudly, not skip every image
                img = open_rgb(item["path"])
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                if not self.skip_bad:
                    raise RuntimeError(f"cannot decode image {item['path']}: {e}") from e
                logger.warning("skipping unreadable image %s: %s", item["path"], e)
                pixels.append(None)
                continue
            pixels.append(self.transform(img))
        out = {"pixel_values": pixels}
        if "label" in batch:
            out["labels"] = batch["label"]
        return out


def collate(examples: list[dict]) -> dict:
    examples = [e for e in examples if e["pixel_values"] is not None]
    if not examples:  # a whole batch of unreadable images: an empty batch would crash the model
        raise RuntimeError("every image in a batch failed to decode; run `data_prep.py inspect` on the data")
    batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.long)
    return batch


def resolve_data_config(pretrained_cfg: dict, *, image_size: int, eval_size: int | None, eval_crop_pct: float | None,
                        eval_crop_mode: str, mean: list[float], std: list[float],
                        interpolation: str | None) -> dict:
    """Normalisation and eval geometry: explicit values win, the rest from the checkpoint's pretrained_cfg."""
    base = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg, use_test_size=False, verbose=False)
    return {
        "mean": tuple(mean) if mean else tuple(base["mean"]),
        "std": tuple(std) if std else tuple(base["std"]),
        "interpolation": interpolation or base["interpolation"],
        "size": image_size,
        "eval_size": eval_size or image_size,
        "crop_pct": eval_crop_pct if eval_crop_pct is not None else base["crop_pct"],
        "crop_mode": eval_crop_mode,
    }
