"""Image folders -> `datasets` splits -> tensors.

Layout checks run on the file tree before anything is decoded, so a bad folder fails in seconds with one line.
Labels are class folder names kept as strings end to end; ids follow the train split's (string-sorted) names.
"""

from __future__ import annotations

import io
import logging
import math
import os
from dataclasses import dataclass, field

import datasets
import pyarrow.compute
import timm.data
import torch
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from PIL import Image, ImageFile, ImageOps
from torchvision.transforms import v2

from .config import ConfigError, DataArguments

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
    # The exact files of our scan, in its order: with data_dir, `imagefolder` would also guess splits from file and
    # folder names (test_2.jpg, ILSVRC2012_val_0003.JPEG or a class called "test" break or shrink the split).
    files = [p for paths in layout.classes.values() for p in paths] + layout.flat
    ds = datasets.load_dataset("imagefolder", data_files={"train": files}, split="train")
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


def load_saved_dataset(name: str) -> tuple[datasets.Dataset, datasets.Dataset | None, datasets.Dataset | None,
                                            list[str]]:
    """A dataset written by `data_prep.py save` (or pushed with `push`): splits train / validation / test with an
    Image column (bytes embedded) and a ClassLabel `label`; an unlabeled test split has label -1 everywhere.
    Returns (train, validation or None, test or None, class names); images stay undecoded until used."""
    try:
        dsd = datasets.load_dataset(name)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ConfigError(f"dataset_name '{name}' cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0]}); "
                          f"give a folder written by `data_prep.py save` or a Hub dataset id") from None
    if "train" not in dsd or not isinstance(dsd["train"].features.get("label"), datasets.ClassLabel):
        raise ConfigError(f"dataset_name '{name}' needs a train split with a ClassLabel 'label' column and an "
                          f"'image' column (as `data_prep.py save` writes); it has {dict(dsd.num_rows)}")
    names = dsd["train"].features["label"].names
    splits = {k: dsd[k].cast_column("image", datasets.Image(decode=False)) for k in dsd}
    test = splits.get("test")
    if test is not None:
        labels = set(test["label"])
        if labels == {-1}:
            test = test.remove_columns("label")
        elif -1 in labels:
            raise ConfigError(f"dataset_name '{name}': the test split mixes labeled and unlabeled (-1) images")
    return splits["train"], splits.get("validation"), test, names


def split_train(ds: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Seeded split that keeps each class's proportion (for runs without a validation folder)."""
    try:
        parts = ds.train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    except ValueError as e:  # too few images per class for a stratified hold-out
        raise ConfigError(f"cannot hold out validation_split={fraction} of train per class ({e}); add a "
                          f"validation_dir or raise validation_split") from None
    return parts["train"], parts["test"]


def image_paths(ds: datasets.Dataset) -> list[str]:
    """File paths in dataset order. Read through Arrow (memory-mapped): a saved dataset's embedded image bytes
    are never copied into Python objects, and the set_transform hook is bypassed."""
    column = ds.with_format("arrow")["image"]
    return pyarrow.compute.struct_field(column, "path").to_pylist()


# ----------------------------------------------------------------------------------------------------------------
# Decoding

# Larger images are refused before decoding: 16k x 16k (268 Mpx, ~800 MB as RGB) is beyond any real photo and
# the usual sign of a decompression bomb. PIL's own guard (a warning at 1x, an error at 2x) is set to match.
MAX_IMAGE_PIXELS = 16384 * 16384
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# What a failed decode raises: PIL's OSError (truncated, unreadable), UnidentifiedImageError (an OSError: not an
# image), SyntaxError/ValueError from broken headers, DecompressionBombError, and our own size guard.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def open_rgb(path, *, allow_truncated: bool = False, draft_size: int | None = None) -> Image.Image:
    """Decode any PIL mode to RGB the way a person would see it: EXIF rotation applied, transparency on white,
    16-bit scaled down (convert('RGB') would clip it to white). Truncated files raise unless allow_truncated.

    draft_size: for JPEGs, let libjpeg decode at 1/2, 1/4 or 1/8 scale while both sides stay >= draft_size
    (DCT-domain downscaling: a 4000x3000 photo decodes several times faster, benchmarks/bench_decode.py)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = allow_truncated  # per call: dataloader workers are separate processes
    with Image.open(path) as im:
        if im.width * im.height > MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(
                f"{im.width}x{im.height} = {im.width * im.height / 1e6:.0f} Mpx is over the "
                f"{MAX_IMAGE_PIXELS / 1e6:.0f} Mpx limit (a decompression bomb?); downscale it with data_prep.py")
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))
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
        warp_interpolation: str = "nearest",
    ):
        interp = v2.InterpolationMode(interpolation)
        warp = v2.InterpolationMode(warp_interpolation)
        # Geometry and colour run on the PIL image (Pillow's kernels; the same v2 ops on uint8 tensors are slower,
        # benchmarks/bench_transforms.py); the tensor is made once, at the end.
        t: list = []
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
        if translate:
            t.append(v2.RandomAffine(degrees=0, translate=tuple(translate), interpolation=warp))
        if rotation > 0:
            t.append(v2.RandomRotation(rotation, interpolation=warp))
        t += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
        if random_erasing > 0:
            t.append(v2.RandomErasing(p=random_erasing))
        self.transforms = v2.Compose(t)
        # The smallest decode that loses nothing: a resize target, or for RandomResizedCrop enough pixels that
        # its smallest crop (min area, 3/4 aspect) still covers `size`. None: crops at the file's own scale.
        if crop == "random_resized":
            self.draft_size = math.ceil(size / math.sqrt(rrc_scale[0] * 3 / 4))
        else:
            self.draft_size = max(resize) if resize else None

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

    An unreadable image raises with its path when strict. Otherwise it is logged once, flagged in `bad_image`
    (counted by the Trainer and listed at the end of the run) and either dropped from the batch by `collate`
    (training: drop=True) or replaced by a grey image (evaluation: every row must stay, in order)."""

    def __init__(self, transform, *, strict: bool, drop: bool, allow_truncated: bool = False,
                 fill_size: int = 224, draft_size: int | None = None):
        self.transform = transform
        self.draft_size = draft_size
        self.strict = strict
        self.drop = drop
        self.allow_truncated = allow_truncated
        self.fill_size = fill_size
        self._logged: set[str] = set()

    def __call__(self, batch: dict) -> dict:
        pixels, bad = [], []
        for item in batch["image"]:
            path = item["path"]
            # Folders give a path; a saved/pushed dataset gives the image bytes (path is then its file name).
            source = io.BytesIO(item["bytes"]) if item.get("bytes") else path
            try:  # only decoding is guarded: a bug in a transform must fail loudly, not skip every image
                img = open_rgb(source, allow_truncated=self.allow_truncated, draft_size=self.draft_size)
                bad.append("")
            except DECODE_ERRORS as e:
                if self.strict:
                    raise RuntimeError(f"cannot decode image {path}: {e} (strict_images is on; set it to false to "
                                       f"skip unreadable images, or run `data_prep.py inspect`)") from e
                if path not in self._logged:
                    self._logged.add(path)
                    logger.warning("unreadable image, %s: %s: %s", "skipped" if self.drop else "replaced by grey",
                                   path, e)
                bad.append(path)
                if self.drop:
                    pixels.append(None)
                    continue
                img = Image.new("RGB", (self.fill_size, self.fill_size), (128, 128, 128))
            pixels.append(self.transform(img))
        out = {"pixel_values": pixels, "bad_image": bad}
        if "label" in batch:
            out["labels"] = batch["label"]
        return out


def collate(examples: list[dict]) -> dict:
    """Stack a batch; drop images that failed to decode; pass their paths on as `bad_images` (the Trainer
    removes that key before the forward pass and keeps the list)."""
    bad = [e["bad_image"] for e in examples if e.get("bad_image")]
    examples = [e for e in examples if e["pixel_values"] is not None]
    if not examples:  # a whole batch of unreadable images: an empty batch would crash the model
        raise RuntimeError(f"every image in a batch failed to decode ({bad[:3]} ...); run `data_prep.py inspect`")
    batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.long)
    if bad:
        batch["bad_images"] = bad
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


def build_presets(data_args: DataArguments, pretrained_cfg: dict) -> tuple[TrainPreset, EvalPreset, dict]:
    """The one mapping from the data options to transforms, shared by training and `data_prep.py preview-aug`
    (so the preview shows exactly what the model sees). Returns the train and eval presets and the resolved
    data config (mean, std, interpolation, sizes, crop), which also goes into the saved model's pretrained_cfg."""
    d = data_args
    dcfg = resolve_data_config(pretrained_cfg, image_size=d.image_size, eval_size=d.eval_size,
                               eval_crop_pct=d.eval_crop_pct, eval_crop_mode=d.eval_crop_mode, mean=d.image_mean,
                               std=d.image_std, interpolation=d.interpolation)
    train = TrainPreset(size=dcfg["size"], mean=dcfg["mean"], std=dcfg["std"], interpolation=dcfg["interpolation"],
                        crop=d.train_crop, resize=tuple(d.train_resize), rrc_scale=tuple(d.rrc_scale),
                        hflip=d.hflip, color_jitter=tuple(d.color_jitter), translate=tuple(d.translate),
                        rotation=d.rotation, random_erasing=d.random_erasing, warp_interpolation=d.warp_interpolation)
    evaluation = EvalPreset(size=dcfg["eval_size"], mean=dcfg["mean"], std=dcfg["std"],
                            interpolation=dcfg["interpolation"], crop_pct=dcfg["crop_pct"], crop_mode=dcfg["crop_mode"])
    return train, evaluation, dcfg
