import os

import pytest
import yaml

from foldertune.config import ConfigError, parse_args, save_config

BASE = ["--train_dir", "t", "--output_dir", "o"]


def write_yaml(tmp_path, d):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(d))
    return str(p)


def test_defaults_then_yaml_then_cli(tmp_path):
    d, m, t = parse_args(BASE)
    assert t.learning_rate == 5e-5 and m.drop_rate == 0.0 and d.image_size == 224  # dataclass defaults
    cfg = write_yaml(tmp_path, {"learning_rate": 0.01, "drop_rate": 0.5, "image_size": 512, "color_jitter": [.1, .2, .3, .05]})
    d, m, t = parse_args(["--config", cfg] + BASE)
    assert (t.learning_rate, m.drop_rate, d.image_size, d.color_jitter) == (0.01, 0.5, 512, [.1, .2, .3, .05])
    d, m, t = parse_args(["--config", cfg, "--learning_rate", "0.1"] + BASE)  # CLI wins over YAML
    assert t.learning_rate == 0.1 and m.drop_rate == 0.5
    assert parse_args([f"--config={cfg}"] + BASE)[1].drop_rate == 0.5  # the --flag=value spelling too


def test_trainer_traps_have_safe_defaults():
    _, _, t = parse_args(BASE)
    assert t.remove_unused_columns is False  # set_transform needs the image column
    assert t.eval_strategy == "epoch" and t.save_strategy == "epoch" and t.load_best_model_at_end


def test_unknown_yaml_key_is_named(tmp_path):
    cfg = write_yaml(tmp_path, {"learning_rat": 0.01})
    with pytest.raises(ConfigError, match="unknown key 'learning_rat'"):
        parse_args(["--config", cfg] + BASE)


def test_wrong_type_in_yaml_names_file_and_option(tmp_path):
    cfg = write_yaml(tmp_path, {"learning_rate": "fast"})
    with pytest.raises(ConfigError, match=r"r\.yaml.*learning_rate.*invalid float"):
        parse_args(["--config", cfg] + BASE)


def test_unknown_cli_flag_and_missing_paths():
    with pytest.raises(ConfigError, match="--nope"):
        parse_args(BASE + ["--nope", "1"])
    with pytest.raises(ConfigError, match="train_dir is required"):
        parse_args(["--output_dir", "o"])
    with pytest.raises(ConfigError, match="file not found"):
        parse_args(["--config", "missing.yaml"] + BASE)


def test_sgd_without_momentum_is_refused():
    with pytest.raises(ConfigError, match="momentum 0"):
        parse_args(BASE + ["--optim", "sgd"])
    _, _, t = parse_args(BASE + ["--optim", "sgd", "--optim_args", "momentum=0.9"])
    assert t.optim == "sgd"


def test_incompatible_options():
    with pytest.raises(ConfigError, match="plateau"):
        parse_args(BASE + ["--lr_schedule", "plateau", "--eval_strategy", "no", "--load_best_model_at_end", "false"])
    with pytest.raises(ConfigError, match="color_jitter needs 4"):
        parse_args(BASE + ["--color_jitter", "0.1", "0.2"])


def test_token_never_accepted_from_cli_or_file(tmp_path):
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        parse_args(BASE + ["--hub_token", "hf_secret123"])
    d, m, t = parse_args(BASE)
    out = tmp_path / "run_config.yaml"
    save_config(str(out), d, m, t)
    assert "hub_token" not in out.read_text()
    cfg = write_yaml(tmp_path, {"hub_token": "hf_x"})
    with pytest.raises(ConfigError, match="must not be in a file"):
        parse_args(["--config", cfg] + BASE)


def test_resolved_config_round_trips(tmp_path):
    d, m, t = parse_args(BASE + ["--learning_rate", "0.02", "--color_jitter", "0.1", "0.1", "0.1", "0", "--report_to",
                                 "tensorboard", "--eval_size", "300"])
    out = tmp_path / "run_config.yaml"
    save_config(str(out), d, m, t)
    d2, m2, t2 = parse_args(["--config", str(out)])
    assert d2 == d and m2 == m and t2.to_dict() == t.to_dict()


@pytest.mark.parametrize("name", ["seed_resnet152.yaml", "demo.yaml", "finetune_lite0.yaml"])
def test_shipped_recipes_parse(name):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d, m, t = parse_args(["--config", os.path.join(root, "configs", name)] + BASE)
    if name.startswith("seed"):
        assert (m.model_name_or_path, m.drop_rate, d.image_size) == ("timm/resnet152.tv2_in1k", 0.5, 512)
        assert (t.learning_rate, t.weight_decay, t.max_grad_norm, t.per_device_train_batch_size) == (0.01, 5e-4, 0.0, 16)
        assert "momentum=0.9" in t.optim_args and t.lr_schedule == "cosine" and t.t_max_epochs == 10
        assert t.dataloader_num_workers == 4
