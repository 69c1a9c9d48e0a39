import json
import os

import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, TimmWrapperForImageClassification, pipeline

from foldertune.config import ConfigError
from foldertune.model import build_model, save_pretrained_timm, set_serving_config

NAMES = ["0", "1", "10", "2", "Rose"]


def tiny(drop_rate=0.5):
    m = build_model("test_resnet", pretrained=False, class_names=NAMES, drop_rate=drop_rate)
    set_serving_config(m, size=40, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", crop_pct=1.0,
                       crop_mode="squash")
    return m.eval()


def test_head_is_timms_dropout_then_linear():
    m = tiny(0.5)
    assert m.timm_model.drop_rate == 0.5 and m.timm_model.fc.out_features == len(NAMES)
    m.train()
    x = torch.randn(2, 3, 40, 40)
    assert not torch.equal(m(x).logits, m(x).logits)  # dropout active in training mode
    m.eval()
    assert torch.equal(m(x).logits, m(x).logits)


def test_save_load_identical_logits_in_transformers_pipeline_and_timm(tmp_path):
    m = tiny()
    save_pretrained_timm(m, str(tmp_path))
    x = torch.randn(3, 3, 40, 40)
    ref = m(x).logits
    keys = safetensors.torch.load_file(str(tmp_path / "model.safetensors")).keys()
    assert not any(k.startswith("timm_model.") for k in keys)  # timm's layout

    hf = AutoModelForImageClassification.from_pretrained(str(tmp_path)).eval()
    assert torch.allclose(hf(x).logits, ref, atol=1e-6)
    assert [hf.config.id2label[i] for i in range(len(NAMES))] == NAMES
    assert hf.timm_model.drop_rate == 0.5  # the dropout head survives the round trip

    t = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert torch.allclose(t(x), ref, atol=1e-6)
    assert t.pretrained_cfg["input_size"] == [3, 40, 40]

    clf = pipeline("image-classification", model=str(tmp_path), top_k=len(NAMES))
    out = clf(Image.new("RGB", (90, 60), (10, 200, 30)))
    assert sorted(o["label"] for o in out) == sorted(NAMES)  # folder names, not LABEL_3
    assert clf.image_processor.data_config["input_size"] == (3, 40, 40)  # serves at the trained size


def test_pretrained_loading_copies_backbone_and_reinits_head(tmp_path):
    # A local folder in timm's Hub layout: config.json + model.safetensors for a 1000-class model.
    src = timm.create_model("test_resnet", pretrained=False, num_classes=1000)
    timm.models._hub.save_for_hf(src, str(tmp_path), safe_serialization="both")
    cfg = json.loads((tmp_path / "config.json").read_text())  # real timm checkpoints carry ImageNet names
    cfg["pretrained_cfg"]["label_names"] = [f"n{i:08d}" for i in range(1000)]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = build_model(str(tmp_path), pretrained=True, class_names=NAMES, drop_rate=0.2)
    src_state, new_state = src.state_dict(), m.timm_model.state_dict()
    backbone = [k for k in src_state if not k.startswith("fc.")]
    assert all(torch.equal(src_state[k], new_state[k]) for k in backbone)
    assert new_state["fc.weight"].shape == (len(NAMES), src_state["fc.weight"].shape[1])
    assert m.config.id2label[2] == "10" and m.timm_model.drop_rate == 0.2
    set_serving_config(m, size=40, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", crop_pct=1.0,
                       crop_mode="squash")
    assert "label_names" not in m.config.pretrained_cfg  # no stale ImageNet names travel with our model


def test_random_init_uses_timms_init():
    m = build_model("test_resnet", pretrained=False, class_names=NAMES)
    # timm zero-inits the last BN gamma of each residual block; transformers' generic init would not.
    assert torch.count_nonzero(m.timm_model.layer1[0].bn2.weight) == 0


def test_unloadable_checkpoint_says_how_to_fix():
    with pytest.raises(ConfigError, match="hf download timm/nope_model.x --local-dir"):
        build_model("timm/nope_model.x", pretrained=True, class_names=NAMES)
    with pytest.raises(ConfigError, match="neither a local folder"):
        build_model("not_an_arch", pretrained=False, class_names=NAMES)
