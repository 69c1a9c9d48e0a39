"""Write a clean, training-ready copy of an image-folder dataset, and preview what augmentation makes of it.

    python data_prep.py prepare data/raw data/clean --max-side 1024 --crop 0.05
    python data_prep.py preview-aug configs/seed_resnet152.yaml data/clean/train --out aug.png

prepare: every file is decoded with the loader's `data.open_rgb` (via the inspection); unusable files go to
quarantine.csv (never deleted from the source); exact duplicates are kept once (a copy in train wins over val/test,
so evaluation does not leak; the same bytes under two labels are quarantined); files that need no change are
copied (or hard-linked with link=True), the others re-encoded with EXIF rotation applied, colour converted to
RGB, an optional border crop and an optional max side (with one, JPEGs over the loader's pixel limit are decoded at
reduced scale and kept instead of quarantined). Without a val split, a seeded per-class split of train.
manifest.csv says what happened to every source file; prepare.json has the options and the counts.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import shutil
from functools import partial

from PIL import Image, ImageOps

from . import data
from .inspection import BAD_KINDS, SPLIT_FOLDERS, _pool_map, analyse_dataset, ensure_outside

logger = logging.getLogger(__name__)

OUT_SPLITS = {"train": "train", "validation": "val", "test": "test"}  # Hub split name -> output folder
MARKER = "prepare.json"  # an output folder holding it was written by prepare and may be rewritten by it
# Modes written back unchanged; anything else (CMYK, 16-bit, palette, alpha) is re-encoded as RGB.
PLAIN_MODES = ("RGB", "L")
# Formats kept when re-encoding; others become PNG (lossless).
KEEP_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def _plan_duplicates(records: list[dict], problems: list[dict]) -> dict[str, tuple[str, str]]:
    """rel -> (action, reason) for exact-duplicate files that are not written: keep one copy per group, the
    first in train if there is one; a group under two labels is quarantined whole (which label is right?)."""
    order = {"train": 0, "val": 1, "validation": 1, "test": 2}
    by_rel = {r["rel"]: r for r in records}
    plan = {}
    for p in problems:
        if not p["kind"].startswith("duplicate_"):
            continue
        members = sorted(p["files"], key=lambda f: (order.get(by_rel[f]["split"], 3), f))
        if p["kind"] == "duplicate_across_classes":
            for f in members:
                plan[f] = ("quarantined", f"same bytes under two labels: {', '.join(m for m in members if m != f)}")
        else:
            for f in members[1:]:
                plan.setdefault(f, ("dropped", f"exact duplicate of {members[0]}"))
    return plan


def _split_train(files: list[dict], *, val_fraction: float, seed: int) -> set[str]:
    """rels moved to val: per class a seeded shuffle, round(n * fraction) of it (at least 1 if n >= 2)."""
    by_class: dict[str, list[str]] = {}
    for r in files:
        by_class.setdefault(r["label"], []).append(r["rel"])
    val = set()
    for label, rels in sorted(by_class.items()):
        rels = sorted(rels)
        random.Random(f"{seed}:{label}").shuffle(rels)  # per-class seed: adding a class leaves others' split alone
        k = max(1, round(len(rels) * val_fraction)) if len(rels) >= 2 else 0
        val.update(rels[:k])
    return val


def _write_one(job: dict, *, crop: float, max_side: int, link: bool, jpeg_quality: int) -> dict:
    """Copy, link or re-encode one file. Returns the manifest row (action, details, dest)."""
    src, dest, rec = job["src"], job["dest"], job["rec"]
    big = "decompression_bomb" in rec["problems"]  # a JPEG over the loader's limit, planned for a reduced decode
    ops = [f"JPEG decoded at reduced scale from {rec['stored_size'][0]}x{rec['stored_size'][1]}"] if big else []
    if "exif_rotated" in rec["problems"]:
        ops.append("exif_transpose")
    if rec["mode"] not in PLAIN_MODES:
        ops.append(f"{rec['mode']}->RGB")
    if crop > 0:
        ops.append(f"crop {crop:g}/side")
    w, h = rec["stored_size"] if big else (rec["width"], rec["height"])  # only for the manifest text
    if crop > 0:
        w, h = w - 2 * round(w * crop), h - 2 * round(h * crop)
    if max_side and max(w, h) > max_side:
        ops.append(f"downscale {w}x{h}->max side {max_side}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not ops:
        if link:
            try:
                os.link(src, dest)
                return {**job["row"], "action": "linked", "dest": job["dest_rel"]}
            except OSError as e:  # another file system, or links not allowed: fall back to a copy
                job["row"]["details"] = f"hard link failed ({e.strerror}), copied"
        shutil.copyfile(src, dest)  # contents only: no permission or owner surprises in the output
        return {**job["row"], "action": "copied", "dest": job["dest_rel"]}
    try:  # EXIF rotation, transparency on white, 16-bit scaled: the loader's decode
        img = _open_big_jpeg(src, max_side) if big else data.open_rgb(src, allow_truncated=False)
    except data.DECODE_ERRORS as e:  # changed since the inspection, or too big even at 1/8 scale
        return {**job["row"], "split": "", "action": "quarantined", "details": f"{type(e).__name__}: {e}"}
    if crop > 0:
        dx, dy = round(img.width * crop), round(img.height * crop)
        img = img.crop((dx, dy, img.width - dx, img.height - dy))
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)  # keeps aspect
    if dest.lower().endswith((".jpg", ".jpeg")):
        img.save(dest, "JPEG", quality=jpeg_quality)
    else:
        img.save(dest)
    return {**job["row"], "action": "re-encoded", "dest": job["dest_rel"], "details": "; ".join(ops)}


def _open_big_jpeg(path: str, max_side: int) -> Image.Image:
    """A JPEG over the loader's pixel limit, decoded at 1/2 to 1/8 scale (libjpeg's DCT scaling via `draft`): memory
    and time drop up to 64x, and both sides stay >= max_side, so the final downscale loses nothing."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # size known; the reduced decode bounds memory
    try:
        with Image.open(path) as im:
            im.draft("RGB", (max_side, max_side))
            if im.width * im.height > data.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"still {im.width}x{im.height} at 1/8 scale")
            return ImageOps.exif_transpose(im).convert("RGB")
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def prepare_dataset(src: str, out: str, *, link: bool = False, crop: float = 0.0, max_side: int = 0,
                    val_fraction: float = 0.1, seed: int = 0, drop_duplicates: bool = True,
                    jpeg_quality: int = 95, workers: int | None = None, min_side: int = 32,
                    progress: bool = True) -> dict:
    """Write out/{train,val,test}/ from src; returns the summary also written to out/prepare.json.

    crop: fraction of the width/height cut from each side (0.05 = 5 % per side), applied after EXIF rotation.
    max_side: downscale so the longer side is at most this many pixels (0: keep). Smaller images are untouched.
    val_fraction, seed: the per-class split of train when src has no val/validation folder.
    drop_duplicates: keep one copy of each exact duplicate (near duplicates are only reported).
    """
    if not 0.0 <= crop < 0.5:
        raise ValueError(f"crop is a fraction per side in [0, 0.5), got {crop}")
    ensure_outside(src, out)
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, MARKER)):
        raise ValueError(f"'{out}' is not empty and was not written by prepare; choose a new or empty folder")
    for name in (*OUT_SPLITS.values(), "manifest.csv", "quarantine.csv", MARKER):  # re-run: replace, not add
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else (os.path.exists(path) and os.remove(path))

    report = analyse_dataset(src, workers=workers, min_side=min_side, progress=progress)
    records = report["files"]
    dup_plan = _plan_duplicates(records, report["problems"]) if drop_duplicates else {}
    train_classes = {r["label"] for r in records if r["split"] == "train" and r["label"] is not None}
    has_val = any(SPLIT_FOLDERS[s.lower()] == "validation" for s in report["splits"])
    mixed = {s for s, sp in report["splits"].items() if sp["labeled"]}  # flat files there cannot be trained on

    rows, jobs, kept = [], [], []
    for rec in records:
        row = {"source": rec["rel"], "split": "", "label": rec["label"] or "", "dest": "", "action": "",
               "details": ""}
        bad = [k for k in rec["problems"] if k in BAD_KINDS]
        if bad == ["decompression_bomb"] and max_side and rec["format"] == "JPEG":
            bad = []  # too big for the loader, not for a reduced-scale decode (_open_big_jpeg)
        if bad:
            rows.append({**row, "action": "quarantined", "details": f"{bad[0]}: {rec['error'] or ''}".rstrip(": ")})
        elif rec["label"] is None and rec["split"] in mixed:
            rows.append({**row, "action": "quarantined", "details": "flat image in a split with class folders"})
        elif rec["label"] is not None and rec["label"] not in train_classes:
            rows.append({**row, "action": "quarantined", "details": f"class '{rec['label']}' is not in train"})
        elif rec["rel"] in dup_plan:
            action, why = dup_plan[rec["rel"]]
            rows.append({**row, "action": action, "details": why})
        else:
            kept.append((rec, row))
    to_val = set() if has_val else _split_train([r for r, _ in kept if r["split"] == "train"],
                                                val_fraction=val_fraction, seed=seed)
    src_root = report["root"]
    for rec, row in kept:
        split = "validation" if rec["rel"] in to_val else SPLIT_FOLDERS[rec["split"].lower()]
        name = os.path.basename(rec["rel"])
        if rec["mode"] not in PLAIN_MODES and rec["format"] not in KEEP_FORMATS:
            name = os.path.splitext(name)[0] + ".png"  # re-encoded: GIF/TIFF/BMP palette etc. -> PNG
        dest_rel = "/".join(x for x in (OUT_SPLITS[split], rec["label"], name) if x)
        row.update(split=OUT_SPLITS[split])
        jobs.append({"src": os.path.join(src_root, rec["rel"]), "dest": os.path.join(out, dest_rel),
                     "dest_rel": dest_rel, "rec": rec, "row": row})
    seen = {}
    for job in jobs:  # two sources landing on one name (a.gif -> a.png beside a.png): suffix the later one
        base, ext = os.path.splitext(job["dest_rel"])
        n = seen.get(job["dest_rel"], 0)
        seen[job["dest_rel"]] = n + 1
        if n:
            job["dest_rel"] = f"{base}_{n}{ext}"
            job["dest"] = os.path.join(out, job["dest_rel"])
    rows += list(_pool_map(partial(_write_one, crop=crop, max_side=max_side, link=link, jpeg_quality=jpeg_quality),
                           jobs, workers=workers or os.cpu_count() or 1, desc="prepare", progress=progress))
    rows.sort(key=lambda r: r["source"])

    os.makedirs(out, exist_ok=True)
    fields = ["source", "action", "split", "label", "dest", "details"]
    with open(os.path.join(out, "manifest.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out, "quarantine.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["source", "details"], extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if r["action"] == "quarantined")
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["dest"]:
            per = counts.setdefault(r["split"], {})
            per[r["label"]] = per.get(r["label"], 0) + 1
    actions = {}
    for r in rows:
        actions[r["action"]] = actions.get(r["action"], 0) + 1
    summary = {
        "source": src_root, "out": os.path.abspath(out), "source_files": len(records),
        "written": sum(n for per in counts.values() for n in per.values()), "actions": dict(sorted(actions.items())),
        "counts": {s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
        "val_split_from_train": not has_val,
        "options": {"link": link, "crop": crop, "max_side": max_side, "val_fraction": val_fraction, "seed": seed,
                    "drop_duplicates": drop_duplicates, "jpeg_quality": jpeg_quality, "min_side": min_side},
        "inspection": report["summary"]["problem_counts"],
    }
    with open(os.path.join(out, MARKER), "w") as f:
        json.dump(summary, f, indent=1)
    logger.info("prepared %s: %d of %d files written, %s", out, summary["written"], len(records), summary["actions"])
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Augmentation preview


def build_train_transform(config: str, data_dir: str, extra_args: list[str] = ()):
    """The train transform exactly as train_hf.py builds it from a recipe: parse_args -> the checkpoint's data
    config -> data.build_presets, the same call train_hf.main makes (a test checks the arguments match).
    Returns (transform, mean, std) (mean/std to un-normalise for display)."""
    from .config import parse_args
    from .model import load_base_config

    data_args, model_args, _ = parse_args(["--config", config, "--train_dir", data_dir,
                                           "--output_dir", os.devnull, *extra_args])
    base = load_base_config(model_args.model_name_or_path, model_args.pretrained)
    transform, _, dcfg = data.build_presets(data_args, base.pretrained_cfg or {})
    return transform, dcfg["mean"], dcfg["std"]


def preview_augmentation(config: str, data_dir: str, *, out: str, images: int = 6, versions: int = 5,
                         seed: int = 0, extra_args: list[str] = ()) -> str:
    """A grid PNG: `images` rows (spread over the classes), the original then `versions` augmented copies, each
    what the model receives (un-normalised for display; random erasing shows as the mean colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    root = os.path.join(data_dir, "train") if os.path.isdir(os.path.join(data_dir, "train")) else data_dir
    layout = data.scan_folder(root, "preview folder")
    if layout.labeled:  # round-robin over classes so every class shows up before any repeats
        pools = {c: random.Random(f"{seed}:{c}").sample(fs, len(fs)) for c, fs in layout.classes.items()}
        picks, i = [], 0
        while len(picks) < images and any(i < len(fs) for fs in pools.values()):
            picks += [(c, fs[i]) for c, fs in pools.items() if i < len(fs)]
            i += 1
        picks = picks[:images]
    else:
        picks = [("", p) for p in random.Random(seed).sample(layout.flat, min(images, len(layout.flat)))]
    transform, mean, std = build_train_transform(config, root, list(extra_args))
    mean_t, std_t = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    fig, axes = plt.subplots(len(picks), versions + 1, figsize=(2 * (versions + 1), 2 * len(picks)), squeeze=False)
    torch.manual_seed(seed)
    for row, (label, path) in enumerate(picks):
        img = data.open_rgb(path)
        axes[row][0].imshow(img)
        axes[row][0].set_title(f"{label} (original)"[:28], fontsize=8)
        for col in range(1, versions + 1):
            x = transform(img)  # normalised float CHW, as the model gets it
            axes[row][col].imshow((x * std_t + mean_t).clamp(0, 1).permute(1, 2, 0).numpy())
            axes[row][col].set_title(f"{tuple(x.shape[1:])}", fontsize=7)
    for ax in fig.axes:
        ax.axis("off")
    fig.suptitle(f"train transform of {os.path.basename(config)}", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
