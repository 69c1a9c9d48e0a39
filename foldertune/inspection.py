"""Inspect an image-folder dataset before training: what it holds and what is wrong with it.

    python data_prep.py inspect data/ --out inspection/data

Reads the layouts training reads (DIR/{train,val|validation,test}/ or DIR/<class>/ alone), decodes every file with
the loader's own `data.open_rgb` in worker processes (one image in memory per worker; records are small dicts),
and finds: unreadable, truncated, zero-byte and non-image files with image extensions, decompression-bomb-sized
and tiny images, CMYK / 16-bit / palette / alpha / EXIF-rotated images, exact (same bytes) and near (perceptual
hash) duplicates within a class, across classes and across splits (leakage), empty classes, class sets that
differ between splits, and strong class imbalance. Nothing in DIR is written.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import multiprocessing
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from . import data

logger = logging.getLogger(__name__)

# Split folder names training accepts, mapped to the names used on the Hub (train / validation / test).
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}

# kind -> (severity, what it means). error: training skips the file or stops; warning: training runs but the
# result suffers (leakage, label noise, imbalance); info: the loader handles it, listed so nothing is a surprise.
KINDS = {
    "zero_byte": ("error", "empty file (0 bytes)"),
    "not_an_image": ("error", "not an image although the extension says so"),
    "truncated": ("error", "image data ends early; training skips it (it loads with allow_truncated_images)"),
    "unreadable": ("error", "decoding fails"),
    "decompression_bomb": ("error", "more pixels than the loader's limit (data.MAX_IMAGE_PIXELS); it is refused "
                                    "(prepare --max-side downscales JPEGs)"),
    "layout": ("error", "folder layout training cannot read"),
    "empty_class": ("error", "class folder without images; training stops on it"),
    "class_mismatch": ("error", "class sets differ between splits"),
    "tiny": ("warning", "smaller than the minimum side"),
    "duplicate_across_splits": ("warning", "same bytes in two splits: evaluation leaks training data"),
    "duplicate_across_classes": ("warning", "same bytes under two labels"),
    "duplicate_within_class": ("warning", "same bytes twice in one class"),
    "near_duplicate_across_splits": ("warning", "perceptually the same image in two splits (leakage)"),
    "near_duplicate_across_classes": ("warning", "perceptually the same image under two labels"),
    "near_duplicate_within_class": ("warning", "perceptually the same image twice in one class"),
    "imbalance": ("warning", "largest class / smallest class over the ratio"),
    "cmyk": ("info", "CMYK colour; the loader converts it to RGB"),
    "16bit": ("info", "16-bit samples; the loader scales them to 8 bits"),
    "palette": ("info", "palette (indexed) colour; the loader converts it to RGB"),
    "alpha": ("info", "transparency; the loader composites it on white"),
    "exif_rotated": ("info", "EXIF orientation tag; the loader rotates it (prepare bakes the rotation in)"),
}
# Per-file kinds that make a file unusable: prepare quarantines these.
BAD_KINDS = ("zero_byte", "not_an_image", "truncated", "unreadable", "decompression_bomb")


@dataclass
class FileTask:
    path: str
    rel: str  # relative to the dataset root, '/'-separated: the id used in every output
    split: str
    label: str | None  # None for a flat (unlabeled) split
    thumb: str | None = None  # thumbnail path (None: none)
    sample: bool = False  # write the thumbnail in any case (a viewer sample), else only if the file is flagged


@dataclass
class Scan:
    """The file tree as training would read it, plus whatever training would trip on (no decoding)."""

    root: str
    splits: dict[str, str]  # split folder name -> path
    files: list[FileTask] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)  # split -> class names (folders, even empty)
    problems: list[dict] = field(default_factory=list)
    ignored: int = 0  # files without an image extension (training never reads them)


def problem(kind: str, *, files: list[str] = (), split: str | None = None, label: str | None = None,
            detail: str = "", severity: str | None = None) -> dict:
    return {"kind": kind, "severity": severity or KINDS[kind][0], "split": split, "label": label,
            "files": list(files), "detail": detail or KINDS[kind][1]}


def discover_splits(root: str) -> dict[str, str]:
    """DIR/{train,val,validation,test}/ when present, else DIR itself is one train split of class folders."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a folder")
    order = list(dict.fromkeys(SPLIT_FOLDERS.values()))  # train, validation, test
    found = {e.name: e.path for e in sorted(os.scandir(root), key=lambda e: (order.index(SPLIT_FOLDERS.get(
        e.name.lower(), "test")), e.name)) if e.is_dir() and e.name.lower() in SPLIT_FOLDERS}
    return found or {"train": root}


def scan_dataset(root: str) -> Scan:
    """Walk the splits like data.scan_folder does, but keep going past problems and record them instead."""
    root = os.path.abspath(root)
    scan = Scan(root=root, splits=discover_splits(root))
    for split, split_dir in scan.splits.items():
        names, flat = [], []
        for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                names.append(entry.name)
                images = 0
                for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if sub.is_dir() and not sub.name.startswith("."):
                        scan.problems.append(problem(
                            "layout", split=split, label=entry.name, files=[_rel(root, sub.path)],
                            detail="sub-folder inside a class folder: its images are not read"))
                    elif sub.is_file() and data.is_image_file(sub.name):
                        scan.files.append(FileTask(sub.path, _rel(root, sub.path), split, entry.name))
                        images += 1
                    elif sub.is_file():
                        scan.ignored += 1
                if not images:
                    scan.problems.append(problem("empty_class", split=split, label=entry.name))
            elif entry.is_file() and data.is_image_file(entry.name):
                flat.append(FileTask(entry.path, _rel(root, entry.path), split, None))
            elif entry.is_file():
                scan.ignored += 1
        scan.classes[split] = names
        scan.files += flat
        if names and flat:
            scan.problems.append(problem("layout", split=split, files=[f.rel for f in flat],
                                         detail="images at the top of a split that has class folders"))
        if not names and not flat:
            scan.problems.append(problem("layout", split=split, detail="split folder without images"))
    # Split folders keep their own spelling (Train/, VAL/): find train by meaning, not by exact name.
    train_key = next((k for k in scan.classes if SPLIT_FOLDERS.get(k.lower()) == "train"), "train")
    train = scan.classes.get(train_key, [])
    for split, names in scan.classes.items():
        if split == train_key or not names or not train:
            continue
        extra, missing = sorted(set(names) - set(train)), sorted(set(train) - set(names))
        if extra:  # training stops on these (data.check_layouts)
            scan.problems.append(problem("class_mismatch", split=split, files=[],
                                         detail=f"classes that train lacks: {extra}"))
        if missing:
            scan.problems.append(problem("class_mismatch", split=split, severity="warning",
                                         detail=f"train classes missing here: {missing}"))
    return scan


def _rel(root: str, path: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


# ----------------------------------------------------------------------------------------------------------------
# Per-file analysis (runs in worker processes)

# 2-D DCT-II basis for a 32x32 block; the perceptual hash keeps the signs of the lowest 8x8 frequencies.
_N = 32
_DCT = np.cos(np.pi * (2 * np.arange(_N)[None, :] + 1) * np.arange(_N)[:, None] / (2 * _N))


def phash(img: Image.Image) -> int:
    """64-bit perceptual hash (pHash: 32x32 grey -> DCT -> 8x8 low frequencies above their median). Robust to
    re-encoding, resizing and small colour changes; Hamming distance <= ~8 of 64 means the same picture.
    Written with numpy (20 lines) instead of adding the `imagehash` package and its scipy/PyWavelets deps."""
    grey = np.asarray(img.convert("L").resize((_N, _N), Image.Resampling.BILINEAR), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) would skew the median
    return int(np.packbits(bits).view(">u8")[0])


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored). For PNG only the eXIf chunk read with the header: PIL's
    getexif() on a PNG decodes the whole image to look for a late chunk (a second decode of every PNG)."""
    if im.format == "PNG":
        exif = Image.Exif()
        if im.info.get("exif"):
            exif.load(im.info["exif"])
        return exif.get(0x0112, 1)
    return im.getexif().get(0x0112, 1)


def _analyse(task: FileTask, *, min_side: int, thumb_px: int) -> dict:
    """Everything about one file, decoded exactly as training decodes it. Never raises."""
    rec = {"rel": task.rel, "split": task.split, "label": task.label, "bytes": 0, "format": None, "mode": None,
           "stored_size": None, "width": None, "height": None, "hash": None, "phash": None, "problems": [], "error": "", "thumb": None}
    try:
        with open(task.path, "rb") as f:
            raw = f.read()
    except OSError as e:
        rec.update(problems=["unreadable"], error=str(e))
        return rec
    rec["bytes"] = len(raw)
    if not raw:
        rec["problems"].append("zero_byte")
        return rec
    rec["hash"] = hashlib.blake2b(raw, digest_size=16).hexdigest()

    # Header only (no pixels are decoded, so PIL's size guard is lifted to read any size): format, stored mode
    # and size, EXIF orientation.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw)) as im:
                rec.update(format=im.format, mode=im.mode, stored_size=list(im.size))
                mode, info = im.mode, im.info
                within_limit = im.width * im.height <= data.MAX_IMAGE_PIXELS
                orientation = _orientation(im) if within_limit else 1  # (a PNG's may decode it: not a bomb)
    except UnidentifiedImageError:
        rec["problems"].append("not_an_image")
        return rec
    except Exception as e:  # noqa: BLE001 - a broken header can raise nearly anything; record it
        rec.update(problems=["unreadable"], error=f"{type(e).__name__}: {e}")
        return rec
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    flags = rec["problems"]
    w, h = rec["stored_size"]
    if w * h > data.MAX_IMAGE_PIXELS:  # the loader refuses it before decoding (data.open_rgb's guard)
        flags.append("decompression_bomb")
        rec["error"] = f"{w}x{h} = {w * h:,} pixels, over the loader's limit of {data.MAX_IMAGE_PIXELS:,}"
        return rec
    if mode == "CMYK":
        flags.append("cmyk")
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        flags.append("16bit")
    if mode in ("P", "PA"):
        flags.append("palette")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in info:
        flags.append("alpha")
    if orientation not in (1, None):
        flags.append("exif_rotated")

    # The full decode, with training's function and training's default (truncated files are refused).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rgb = data.open_rgb(task.path, allow_truncated=False)
    except Image.DecompressionBombError as e:
        flags.append("decompression_bomb")
        rec["error"] = str(e)
        return rec
    except data.DECODE_ERRORS as e:
        rec["error"] = f"{type(e).__name__}: {e}"
        try:  # truncated if the lenient decode (allow_truncated_images) gets through
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rgb = data.open_rgb(task.path, allow_truncated=True)
            flags.append("truncated")
        except data.DECODE_ERRORS:
            flags.append("unreadable")
            return rec
    rec["width"], rec["height"] = rgb.size  # as the model sees it: after the EXIF rotation
    if min(rgb.size) < min_side:
        flags.append("tiny")
    rec["phash"] = f"{phash(rgb):016x}"
    if task.thumb and (task.sample or flags):
        _write_thumb(rgb, task.thumb, thumb_px)
        rec["thumb"] = os.path.basename(task.thumb)
    return rec


def _write_thumb(img: Image.Image, path: str, px: int) -> None:
    img = img.copy()
    img.thumbnail((px, px), Image.Resampling.BILINEAR, reducing_gap=2.0)  # reducing_gap: fast on big photos
    img.save(path, "JPEG", quality=80)


def _thumb_only(task: FileTask, *, thumb_px: int) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _write_thumb(data.open_rgb(task.path, allow_truncated=True), task.thumb, thumb_px)
        return task.rel
    except data.DECODE_ERRORS:
        return None


def _pool_map(fn, tasks: list, *, workers: int, desc: str, progress: bool):
    """fn over tasks on `workers` processes, results in task order, with a progress bar. Small jobs run
    in-process: starting a pool costs more. Workers come from a fork server that imported this module once (a few
    seconds, then each worker starts in milliseconds); plain fork is not used because forking a process whose
    other threads hold locks (torch, tqdm, logging, e.g. after a training run in the same process) can hang."""
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress, mininterval=0.5)
    if workers <= 1 or len(tasks) < 4 * workers:
        for t in tasks:
            yield fn(t)
            bar.update()
    else:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload([__name__])
        chunk = max(1, min(32, len(tasks) // (workers * 8)))
        with ctx.Pool(workers) as pool:
            for r in pool.imap(fn, tasks, chunksize=chunk):
                yield r
                bar.update()
    bar.close()


# ----------------------------------------------------------------------------------------------------------------
# Whole-dataset analysis


def _groups(pairs: list[tuple[int, int]], n: int) -> list[list[int]]:
    """Connected components of the pair graph (union-find), each sorted, groups with >= 2 members."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[find(a)] = find(b)
    members = collections.defaultdict(list)
    for i in {x for p in pairs for x in p}:
        members[find(i)].append(i)
    return sorted(sorted(m) for m in members.values() if len(m) > 1)


def near_pairs(hashes: np.ndarray, *, threshold: int, block: int = 256) -> list[tuple[int, int]]:
    """All index pairs i < j whose 64-bit hashes differ in <= threshold bits. Blocked all-pairs on uint64 with
    numpy's popcount: memory block x n x 8 bytes (256 x 50k = 100 MB), ~1e9 pairs in tens of seconds."""
    out = []
    for start in range(0, len(hashes), block):
        a = hashes[start:start + block]
        dist = np.bitwise_count(a[:, None] ^ hashes[None, start:])
        ii, jj = np.nonzero(dist <= threshold)
        jj = jj + start
        keep = jj > ii + start
        out += list(zip((ii[keep] + start).tolist(), jj[keep].tolist()))
    return out


def _duplicate_problems(records: list[dict], groups: list[list[int]], prefix: str) -> list[dict]:
    found = []
    for g in groups:
        members = [records[i] for i in g]
        splits = {m["split"] for m in members}
        labels = {m["label"] for m in members if m["label"] is not None}
        files = [m["rel"] for m in members]
        where = ", ".join(sorted(splits))
        if prefix == "near_duplicate":  # how close: the largest hash distance inside the group (bits of 64)
            hs = [int(m["phash"], 16) for m in members]
            where += f"; hash distance <= {max(bin(a ^ b).count('1') for a in hs for b in hs)} bits"
        if len(splits) > 1:
            found.append(problem(f"{prefix}_across_splits", files=files, detail=f"in {where}"))
        if len(labels) > 1:
            found.append(problem(f"{prefix}_across_classes", files=files, detail=f"labels {sorted(labels)}"))
        if len(splits) == 1 and len(labels) <= 1:
            found.append(problem(f"{prefix}_within_class", files=files, split=members[0]["split"],
                                 label=members[0]["label"], detail=f"in {where}" if "distance" in where else ""))
    return found


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    q = np.percentile(np.asarray(values, dtype=np.float64), [0, 5, 50, 95, 100])
    return dict(zip(("min", "p5", "median", "p95", "max"), (round(float(v), 3) for v in q)))


def analyse_dataset(root: str, *, workers: int | None = None, min_side: int = 32, near_threshold: int = 6,
                    imbalance_ratio: float = 10.0, thumb_dir: str | None = None, thumb_px: int = 160,
                    samples_per_class: int = 24, progress: bool = True) -> dict:
    """Scan, decode every file in parallel and find every problem. Returns the report (JSON-able): summary,
    per split/class stats, problems (kind, severity, split, label, files, detail) and one record per file.

    min_side: images with a shorter side (pixels, after EXIF rotation) are `tiny`.
    near_threshold: max Hamming distance (bits of 64) between perceptual hashes for a near duplicate.
    imbalance_ratio: flag a split whose largest class has this many times the images of its smallest.
    thumb_dir: write thumbnails (JPEG, thumb_px max side) for samples_per_class images per class, every flagged
    image and every duplicate; None writes none.
    """
    t0 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    scan = scan_dataset(root)
    by_class = collections.defaultdict(list)
    for task in scan.files:
        by_class[(task.split, task.label)].append(task)
    if thumb_dir:
        os.makedirs(thumb_dir, exist_ok=True)
        for tasks in by_class.values():  # evenly spaced samples: deterministic, spread over the (sorted) names
            step = max(1, len(tasks) // samples_per_class)
            for t in tasks[::step][:samples_per_class]:
                t.sample = True
        for t in scan.files:  # flagged files get a thumbnail too; the worker writes it only when flagged
            t.thumb = _thumb_path(thumb_dir, t.rel)
    records = list(_pool_map(partial(_analyse, min_side=min_side, thumb_px=thumb_px), scan.files,
                             workers=workers, desc="inspect", progress=progress))
    problems = list(scan.problems)
    for rec in records:
        for kind in rec["problems"]:
            problems.append(problem(kind, files=[rec["rel"]], split=rec["split"], label=rec["label"],
                                    detail=_file_detail(kind, rec, min_side)))

    # Exact duplicates: same bytes. Near duplicates: perceptual hash within the threshold, not already exact.
    by_hash = collections.defaultdict(list)
    for i, rec in enumerate(records):
        if rec["hash"]:
            by_hash[rec["hash"]].append(i)
    exact = sorted(g for g in by_hash.values() if len(g) > 1)
    problems += _duplicate_problems(records, exact, "duplicate")
    hashed = [i for i, r in enumerate(records) if r["phash"]]
    hashes = np.array([int(records[i]["phash"], 16) for i in hashed], dtype=np.uint64)
    pairs = [(hashed[a], hashed[b]) for a, b in near_pairs(hashes, threshold=near_threshold)
             if records[hashed[a]]["hash"] != records[hashed[b]]["hash"]]
    near = _groups(pairs, len(records))
    problems += _duplicate_problems(records, near, "near_duplicate")

    # Thumbnails for duplicate members that were neither sampled nor flagged (second, small parallel pass).
    if thumb_dir:
        dup_members = {i for g in exact + near for i in g}
        todo = [FileTask(scan.files[i].path, records[i]["rel"], "", None, _thumb_path(thumb_dir, records[i]["rel"]))
                for i in sorted(dup_members) if not records[i]["thumb"] and records[i]["phash"]]
        done = set(filter(None, _pool_map(partial(_thumb_only, thumb_px=thumb_px), todo, workers=workers,
                                          desc="thumbnails", progress=progress)))
        for i in dup_members:
            if records[i]["rel"] in done:
                records[i]["thumb"] = os.path.basename(_thumb_path(thumb_dir, records[i]["rel"]))

    # Per split and class: counts of usable images, sizes, aspect ratios, modes, formats.
    splits = {}
    grouped = collections.defaultdict(list)  # (split, label) -> records: one pass, not classes x files
    for r in records:
        grouped[(r["split"], r["label"])].append(r)
    for split in scan.splits:
        recs = [r for r in records if r["split"] == split]
        classes = {}
        for name in scan.classes[split] or ([None] if recs else []):
            cr = grouped[(split, name)]
            ok = [r for r in cr if r["width"] and not set(r["problems"]) & set(BAD_KINDS)]
            classes["" if name is None else name] = {"files": len(cr), "usable": len(ok),
                                                     "bytes": sum(r["bytes"] for r in cr)}
        ok = [r for r in recs if r["width"] and not set(r["problems"]) & set(BAD_KINDS)]
        splits[split] = {
            "path": scan.splits[split], "labeled": bool(scan.classes[split]), "files": len(recs),
            "usable": len(ok), "bytes": sum(r["bytes"] for r in recs), "classes": classes,
            "width": _stats([r["width"] for r in ok]), "height": _stats([r["height"] for r in ok]),
            "aspect": _stats([r["width"] / r["height"] for r in ok]),
            "modes": dict(collections.Counter(r["mode"] for r in recs if r["mode"]).most_common()),
            "formats": dict(collections.Counter(r["format"] for r in recs if r["format"]).most_common()),
        }
        counts = {c: v["usable"] for c, v in classes.items() if c and v["usable"]}
        if len(counts) > 1 and max(counts.values()) >= imbalance_ratio * min(counts.values()):
            big, small = max(counts, key=counts.get), min(counts, key=counts.get)
            problems.append(problem("imbalance", split=split, detail=(
                f"'{big}' has {counts[big]} images, '{small}' {counts[small]} "
                f"({counts[big] / counts[small]:.1f}x >= {imbalance_ratio:g}x)")))

    severities = collections.Counter(p["severity"] for p in problems)
    report = {
        "root": scan.root,
        "summary": {
            "files": len(records), "usable": sum(s["usable"] for s in splits.values()),
            "bytes": sum(r["bytes"] for r in records), "ignored_non_image_files": scan.ignored,
            "classes": sorted({c for names in scan.classes.values() for c in names}),
            "errors": severities["error"], "warnings": severities["warning"], "info": severities["info"],
            "problem_counts": dict(sorted(collections.Counter(p["kind"] for p in problems).items())),
            "seconds": round(time.perf_counter() - t0, 2), "workers": workers,
        },
        "settings": {"min_side": min_side, "near_threshold": near_threshold, "imbalance_ratio": imbalance_ratio,
                     "max_image_pixels": data.MAX_IMAGE_PIXELS},
        "splits": splits,
        "problems": problems,
        "files": records,
    }
    logger.info("inspected %d files in %.1f s: %d errors, %d warnings, %d info", len(records),
                report["summary"]["seconds"], severities["error"], severities["warning"], severities["info"])
    return report


def _thumb_path(thumb_dir: str, rel: str) -> str:
    return os.path.join(thumb_dir, hashlib.blake2b(rel.encode(), digest_size=8).hexdigest() + ".jpg")


def _file_detail(kind: str, rec: dict, min_side: int) -> str:
    if kind == "tiny":
        return f"{rec['width']}x{rec['height']} px, shorter side < {min_side}"
    if kind in ("unreadable", "decompression_bomb", "truncated") and rec["error"]:
        return rec["error"][:300]
    return KINDS[kind][1]


def format_summary(report: dict, *, max_files: int = 3) -> str:
    """The printed summary: one line per split and class, then each problem kind with a few files."""
    s = report["summary"]
    lines = [f"{report['root']}: {s['files']} files ({s['bytes'] / 1e6:.1f} MB), {s['usable']} usable, "
             f"{len(s['classes'])} classes, {s['seconds']:.1f} s on {s['workers']} processes"]
    for split, sp in report["splits"].items():
        w, h, a = sp["width"], sp["height"], sp["aspect"]
        size = f"median {w['median']:.0f}x{h['median']:.0f}, min side {min(w['min'], h['min']):.0f}, " \
               f"aspect {a['min']:.2f}-{a['max']:.2f}" if w else "no usable images"
        modes = ", ".join(f"{m} {n}" for m, n in sp["modes"].items())
        lines.append(f"  {split}: {sp['usable']}/{sp['files']} usable; {size}; modes {modes}")
        counts = [f"{c or '(flat)'} {v['usable']}" for c, v in sp["classes"].items()]
        lines.append("    " + ", ".join(counts[:30]) + (f", ... ({len(counts)} classes)" if len(counts) > 30 else ""))
    if s["ignored_non_image_files"]:
        lines.append(f"  {s['ignored_non_image_files']} files without an image extension (training ignores them)")
    if not report["problems"]:
        lines.append("no problems found")
        return "\n".join(lines)
    lines.append(f"problems: {s['errors']} errors, {s['warnings']} warnings, {s['info']} info")
    by_kind = collections.defaultdict(list)
    for p in report["problems"]:
        by_kind[(p["severity"], p["kind"])].append(p)
    order = {"error": 0, "warning": 1, "info": 2}
    for (sev, kind), ps in sorted(by_kind.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        lines.append(f"  {sev:7s} {kind:30s} {len(ps):5d}  {KINDS[kind][1]}")
        for p in ps[:max_files]:
            where = " <-> ".join(p["files"][:3]) or "/".join(x for x in (p["split"], p["label"]) if x)
            lines.append(f"            {where}  {p['detail'] if p['detail'] != KINDS[kind][1] else ''}".rstrip())
        if len(ps) > max_files:
            lines.append(f"            ... {len(ps) - max_files} more in inspection.json")
    return "\n".join(lines)


def ensure_outside(src: str, out: str) -> None:
    """Outputs never go inside the source (nothing in it is ever written) nor around it (out may be cleaned)."""
    s, o = os.path.realpath(src), os.path.realpath(out)
    if o == s or o.startswith(s + os.sep) or s.startswith(o + os.sep):
        raise ValueError(f"output '{out}' must be outside the source folder '{src}' (and not contain it)")


def inspect_dataset(root: str, *, out_dir: str, workers: int | None = None, min_side: int = 32,
                    near_threshold: int = 6, imbalance_ratio: float = 10.0, samples_per_class: int = 24,
                    progress: bool = True) -> dict:
    """analyse_dataset + the report files in out_dir (inspection.json, class_distribution.png, index.html,
    thumbs/). Re-running replaces them (stale thumbnails are removed first)."""
    from .viewer import write_report  # the page renderer imports KINDS from here

    ensure_outside(root, out_dir)
    thumbs = os.path.join(out_dir, "thumbs")
    shutil.rmtree(thumbs, ignore_errors=True)
    report = analyse_dataset(root, workers=workers, min_side=min_side, near_threshold=near_threshold,
                             imbalance_ratio=imbalance_ratio, thumb_dir=thumbs, samples_per_class=samples_per_class,
                             progress=progress)
    write_report(report, out_dir)
    return report
