"""Image folders -> a `datasets.DatasetDict` (Image + ClassLabel; splits train / validation / test), saved as
Hub-style parquet with embedded image bytes and a dataset card, locally or pushed to the Hub.

    python data_prep.py save data/clean data/clean_parquet          # then: datasets.load_dataset("data/clean_parquet")
    python data_prep.py push data/clean me/my-dataset --private      # token: HF_TOKEN or `hf auth login`

Both write the layout `DatasetDict.push_to_hub` makes (data/<split>-NNNNN-of-MMMMM.parquet + README.md whose YAML
has the features and data files), so the Hub's dataset viewer and `datasets.load_dataset` read it as they read any.

The folders are read with training's own checks (data.scan_folder / data.check_layouts), so the label ids are the
ones training uses (train's class names, string-sorted). An unlabeled (flat) test split gets label -1.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import tempfile

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from . import data
from .inspection import SPLIT_FOLDERS, discover_splits

logger = logging.getLogger(__name__)

# Parquet shards of at most this many bytes of image files (the Hub viewer and datasets handle ~500 MB well).
MAX_SHARD_BYTES = 500 * 1024 * 1024


def build_dataset_dict(root: str) -> tuple[datasets.DatasetDict, list[str]]:
    """DatasetDict of {'image': path (Image feature), 'label': ClassLabel} per split; images are not read."""
    folders = discover_splits(root)
    layouts = {SPLIT_FOLDERS[name.lower()]: data.scan_folder(path, f"{name} split") for name, path in folders.items()}
    if "train" not in layouts:
        raise ValueError(f"{root}: no train split (train/ or class folders at the top)")
    names = data.check_layouts(layouts["train"], layouts.get("validation"), layouts.get("test"))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    splits = {}
    for split in ("train", "validation", "test"):
        layout = layouts.get(split)
        if layout is None:
            continue
        items = [(p, names.index(c)) for c, ps in layout.classes.items() for p in ps] + [(p, -1) for p in layout.flat]
        splits[split] = datasets.Dataset.from_dict(
            {"image": [p for p, _ in items], "label": [i for _, i in items]}, features=features,
            split=datasets.NamedSplit(split))
    return datasets.DatasetDict(splits), names


def render_card(dsd: datasets.DatasetDict, names: list[str], *, root: str, title: str) -> str:
    """Markdown body of the dataset card: classes, counts per split and class, how it was prepared."""
    lines = [f"# {title}", "", f"Image classification dataset: {len(names)} classes, "
             f"{sum(len(d) for d in dsd.values())} images. Written by foldertune `data_prep.py` from image folders.",
             "", "## Counts", "", "| class | " + " | ".join(dsd) + " |", "|---|" + "---:|" * len(dsd)]
    counts = {s: _label_counts(d) for s, d in dsd.items()}
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(counts[s].get(i, 0)) for s in dsd) + " |")
    if any(-1 in c for c in counts.values()):
        lines.append("| (unlabeled) | " + " | ".join(str(counts[s].get(-1, 0)) for s in dsd) + " |")
    lines.append("| **total** | " + " | ".join(str(len(d)) for d in dsd.values()) + " |")
    lines += ["", "## Preparation", ""]
    prep_path = os.path.join(root, "prepare.json")
    if os.path.isfile(prep_path):
        with open(prep_path) as f:
            prep = json.load(f)
        opts = prep.get("options", {})
        lines += [f"Cleaned with `data_prep.py prepare`: {prep.get('source_files')} source files, "
                  f"{prep.get('written')} kept; actions {prep.get('actions')}.",
                  f"Options: border crop {opts.get('crop', 0):g} per side, max side {opts.get('max_side') or 'kept'}, "
                  f"validation {'split from train (fraction ' + str(opts.get('val_fraction')) + ', seed ' + str(opts.get('seed')) + ')' if prep.get('val_split_from_train') else 'from the source'}, "
                  f"exact duplicates {'dropped' if opts.get('drop_duplicates') else 'kept'}.",
                  f"Problems found in the source: {prep.get('inspection') or 'none'}."]
    else:
        lines.append("Written as found in the folders (not cleaned with `data_prep.py prepare`).")
    lines += ["", "## Use", "", "```python", "from datasets import load_dataset",
              "ds = load_dataset(\"REPO_OR_FOLDER\")", "ds[\"train\"].features[\"label\"].names  # class names", "```",
              "", "Label ids follow the class names sorted as strings; an unlabeled test image has label -1."]
    return "\n".join(lines) + "\n"


def _label_counts(ds: datasets.Dataset) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in ds["label"]:
        out[i] = out.get(i, 0) + 1
    return out


def _embed(batch: dict, root: str) -> dict:
    images = []
    for item in batch["image"]:
        with open(item["path"], "rb") as f:
            images.append({"bytes": f.read(), "path": os.path.relpath(item["path"], root)})
    return {"image": images}


def save_dataset(root: str, out: str, *, title: str | None = None) -> dict[str, int]:
    """out/README.md + out/data/<split>-NNNNN-of-MMMMM.parquet, the layout push_to_hub writes: load it with
    `datasets.load_dataset(out)`. Re-running replaces the parquet files. Returns rows per split."""
    from .inspection import ensure_outside

    ensure_outside(root, out)
    dsd, names = build_dataset_dict(root)
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    for old in glob.glob(os.path.join(data_dir, "*.parquet")):
        os.remove(old)
    infos = {}
    for split, ds in dsd.items():
        paths = [x["path"] for x in ds.cast_column("image", datasets.Image(decode=False))["image"]]
        nbytes = sum(os.path.getsize(p) for p in paths)
        shards = nbytes // MAX_SHARD_BYTES + 1
        for i in range(shards):
            # File bytes go into the table (as push_to_hub embeds them); the path kept beside them is the file's
            # path under root (split/class/name), not the bare name push_to_hub keeps: names repeat across classes.
            shard = ds.shard(num_shards=shards, index=i, contiguous=True).cast_column(
                "image", datasets.Image(decode=False))
            shard = shard.map(_embed, fn_kwargs={"root": root}, batched=True, batch_size=100, keep_in_memory=True)
            shard = shard.cast_column("image", datasets.Image())
            shard.to_parquet(os.path.join(data_dir, f"{split}-{i:05d}-of-{shards:05d}.parquet"))
        infos[split] = datasets.SplitInfo(name=split, num_examples=len(ds), num_bytes=nbytes)
    card_data = DatasetCardData(task_categories=["image-classification"])
    splits = datasets.SplitDict()
    for split_info in infos.values():
        splits.add(split_info)
    info = DatasetInfo(features=dsd["train"].features, splits=splits)
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs({"default": {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in dsd]}}) \
        .to_dataset_card_data(card_data)
    body = render_card(dsd, names, root=root, title=title or os.path.basename(os.path.abspath(root)))
    DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}").save(os.path.join(out, "README.md"))
    logger.info("saved %s: %s", out, {s: len(d) for s, d in dsd.items()})
    return {s: len(d) for s, d in dsd.items()}


def push_dataset(root: str, repo_id: str, *, private: bool = False, title: str | None = None) -> str:
    """Push to the Hub exactly what save_dataset writes (one code path, one format): parquet shards with the image
    bytes and the card, in one commit; shards of an earlier push are replaced. HF_ENDPOINT picks the server; the
    token comes from HF_TOKEN or `hf auth login` and is never written anywhere. Returns the dataset URL.
    (Not DatasetDict.push_to_hub: it deletes each shard's temp file right after the LFS pre-upload, which only
    works against servers that take LFS uploads; upload_folder works with any, and writes the same files.)"""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="foldertune-push-") as tmp:
        counts = save_dataset(root, tmp, title=title or url.repo_id.split("/")[-1])
        api.upload_folder(folder_path=tmp, repo_id=url.repo_id, repo_type="dataset",
                          delete_patterns=["data/*.parquet"], commit_message=f"Upload image dataset {counts}")
    logger.info("pushed %s: %s", url, counts)
    return str(url)
