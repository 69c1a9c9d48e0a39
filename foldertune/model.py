"""Build the classifier: transformers' TimmWrapperForImageClassification around a timm backbone.

The head is timm's own (`drop_rate` gives Dropout -> Linear inside the timm model), so it survives save/load,
`pipeline(...)` and `timm.create_model("hf-hub:...")`, unlike a hand-made nn.Sequential head.
"""

from __future__ import annotations

import logging
import os

import timm
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

from .config import ConfigError

logger = logging.getLogger(__name__)


def _offline_hint(name: str) -> str:
    return (f"cannot load checkpoint '{name}' (no network, or not in the Hugging Face cache); on a machine with "
            f"network run `hf download {name} --local-dir DIR` and pass --model_name_or_path DIR")


def load_base_config(name: str, pretrained: bool) -> TimmWrapperConfig:
    """The checkpoint's config (architecture + pretrained_cfg). With pretrained=false a bare timm architecture
    name works too (resnet18, test_resnet): its default pretrained_cfg supplies mean/std/crop."""
    if os.path.isdir(name) or "/" in name:
        try:
            return TimmWrapperConfig.from_pretrained(name)
        except (OSError, ValueError) as e:
            if pretrained or not name.startswith("timm/"):
                raise ConfigError(_offline_hint(name) + f" ({type(e).__name__})") from None
            name = name.split("/", 1)[1]  # random init of timm/<arch>.<tag>: the architecture is enough
    if not timm.is_model(name.split(".")[0]):
        raise ConfigError(f"'{name}' is neither a local folder, a Hub id, nor a timm architecture "
                          f"(see timm.list_models())")
    if pretrained:
        raise ConfigError(f"'{name}' is an architecture name; with pretrained=true give a checkpoint "
                          f"(e.g. timm/{name}) or a local folder, or set pretrained: false")
    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    return TimmWrapperConfig(architecture=name.split(".")[0],
                             pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {})


def build_model(name: str, *, pretrained: bool, class_names: list[str], drop_rate: float = 0.0,
                drop_path_rate: float = 0.0) -> TimmWrapperForImageClassification:
    """Backbone weights from the checkpoint (pretrained) or timm's init; a new head for `class_names`."""
    base = load_base_config(name, pretrained)
    labels = {
        "num_labels": len(class_names),
        "id2label": dict(enumerate(class_names)),
        "label2id": {n: i for i, n in enumerate(class_names)},
    }
    model_args = {"drop_rate": drop_rate}
    if drop_path_rate:
        model_args["drop_path_rate"] = drop_path_rate
    if pretrained:
        try:
            model = TimmWrapperForImageClassification.from_pretrained(
                name, ignore_mismatched_sizes=True, model_args=model_args, **labels)
        except OSError as e:
            raise ConfigError(_offline_hint(name) + f" ({type(e).__name__})") from None
    else:
        config = TimmWrapperConfig(architecture=base.architecture, pretrained_cfg=base.pretrained_cfg,
                                   model_args=model_args, **labels)
        model = TimmWrapperForImageClassification(config)
        # transformers' post_init re-initialises every Linear/Conv with N(0, 0.02); restore timm's own init
        # (kaiming for convs, zero-gamma residual BN) which trains from scratch far better.
        fresh = timm.create_model(base.architecture, pretrained=False, num_classes=len(class_names), **model_args)
        model.timm_model.load_state_dict(fresh.state_dict())
    return model


def set_serving_config(model: TimmWrapperForImageClassification, *, size: int, mean, std, interpolation: str,
                       crop_pct: float, crop_mode: str) -> None:
    """Write the eval preprocessing into pretrained_cfg, which is what `pipeline`'s TimmWrapperImageProcessor and
    timm's `resolve_data_config` read: the published model then serves at the trained size and normalisation."""
    cfg = dict(model.config.pretrained_cfg or {})
    cfg.update(input_size=[3, size, size], test_input_size=[3, size, size], mean=list(mean), std=list(std),
               interpolation=interpolation, crop_pct=crop_pct, test_crop_pct=crop_pct, crop_mode=crop_mode,
               num_classes=model.config.num_labels)
    for stale in ("hf_hub_id", "label_names", "label_descriptions"):  # the base checkpoint's, not ours
        cfg.pop(stale, None)
    model.config.pretrained_cfg = cfg


def save_pretrained_timm(model: TimmWrapperForImageClassification, out_dir: str) -> None:
    """config.json (labels + pretrained_cfg) and model.safetensors with timm's own keys (no 'timm_model.' prefix):
    the layout of timm's Hub repos, which transformers, `pipeline` and `timm.create_model` all load."""
    import safetensors.torch

    os.makedirs(out_dir, exist_ok=True)
    model.config.save_pretrained(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.timm_model.state_dict().items()}
    safetensors.torch.save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
