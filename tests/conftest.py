"""Shared fakes: offline Hugging Face env, generated image folders, tiny random-init timm models.

Nothing here touches the network or ../shared; images are drawn by the tests.
"""

import os
import shutil
import sys
import tempfile

# No Hub access and a private HF cache for every test and every subprocess it starts. Set at import, before any
# test module imports huggingface_hub / transformers / datasets: they read these once, when first imported
# (set later, a Hub lookup would first wait ~20 s for the network to time out).
_HF_HOME = tempfile.mkdtemp(prefix="foldertune_hf_home_")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": _HF_HOME,
               "HF_HUB_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": "2"}
os.environ.update(OFFLINE_ENV)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True, scope="session")
def offline_env():
    yield
    shutil.rmtree(_HF_HOME, ignore_errors=True)


# One colour per class plus noise: learnable in a couple of epochs by a tiny net, yet not trivially identical.
PALETTE = [(220, 40, 40), (40, 200, 60), (50, 60, 220), (230, 200, 40), (200, 60, 200), (40, 200, 200),
           (120, 120, 120), (250, 140, 30), (20, 20, 20), (240, 240, 240), (120, 60, 20), (80, 160, 80),
           (160, 80, 160)]


def draw(class_index: int, seed: int, size=(40, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.array(PALETTE[class_index % len(PALETTE)], dtype=np.float32)
    arr = base + rng.normal(0, 25, size=(size[1], size[0], 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def make_folder(root, classes: dict, flat: int = 0, ext: str = ".png", size=(40, 32), seed: int = 0):
    """classes: {name: count} -> root/name/img_i.ext ; flat: that many images directly in root.
    Class i (in dict order) gets colour i, so labels are recoverable from pixels."""
    os.makedirs(root, exist_ok=True)
    for ci, (name, count) in enumerate(classes.items()):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            draw(ci, seed * 100003 + ci * 1009 + i, size).save(os.path.join(root, name, f"img_{i:03d}{ext}"))
    for i in range(flat):
        draw(i % max(1, len(classes) or 1), seed + 7919 * i, size).save(os.path.join(root, f"flat_{i:03d}{ext}"))
    return str(root)


@pytest.fixture
def image_dataset(tmp_path):
    """train/ val/ (labeled, 3 classes) and test/ (flat, unlabeled) with odd sizes."""
    classes = ["cat", "Dog", "emu"]
    make_folder(tmp_path / "train", {c: 8 for c in classes}, seed=1)
    make_folder(tmp_path / "val", {c: n for c, n in zip(classes, (3, 2, 2))}, seed=2)
    make_folder(tmp_path / "test", {}, flat=5, seed=3)
    return tmp_path


TINY_ARGS = ["--model_name_or_path", "test_resnet", "--pretrained", "false", "--image_size", "32",
             "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--optim", "adamw_torch",
             "--learning_rate", "0.003", "--dataloader_num_workers", "0", "--report_to", "none", "--seed", "0",
             "--disable_tqdm", "true"]
