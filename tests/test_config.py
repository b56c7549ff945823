import json
from pathlib import Path

import pytest

from slm.config import ConfigError, ModelConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def test_report_preset_matches_section_2_3():
    c = ModelConfig.from_preset("ncvc-slm-1b")
    assert (c.n_layers, c.d_model, c.d_mlp, c.n_heads, c.dim_head, c.n_kv_heads) == (24, 2048, 8192, 32, 64, 8)
    assert (c.vocab_size, c.max_seq_len, c.rope_theta) == (32768, 2048, 10000.0)
    assert (c.mlp_act, c.mlp_gated, c.tie_embeddings, c.scale_embeddings) == ("silu", False, False, True)
    assert (c.attn_dropout, c.resid_dropout) == (0.1, 0.1)
    assert c.std == pytest.approx(0.01398, abs=1e-5)  # sqrt(2 / (5 * 2048))


@pytest.mark.parametrize("name", sorted(ModelConfig.PRESETS))
def test_config_files_in_configs_match_presets(name):
    assert ModelConfig.load(CONFIGS / f"{name}.yaml") == ModelConfig.from_preset(name)


def test_every_config_file_is_a_preset():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(ModelConfig.PRESETS)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_round_trip(tmp_path, suffix):
    c = ModelConfig.from_preset("tiny", mlp_gated=True, eos_token_id=[1, 2], rope_scaling=None)
    c.save(tmp_path / f"m{suffix}")
    assert ModelConfig.load(tmp_path / f"m{suffix}") == c


def test_resolve_takes_a_preset_or_a_path(tmp_path):
    assert ModelConfig.resolve("tiny") == ModelConfig.from_preset("tiny")
    ModelConfig.from_preset("slm-25m").save(tmp_path / "x.yaml")
    assert ModelConfig.resolve(tmp_path / "x.yaml") == ModelConfig.from_preset("slm-25m")
    with pytest.raises(ConfigError, match="neither a model preset"):
        ModelConfig.resolve("no-such-model")


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(d_model=2048, n_heads=30), "n_heads=30 must divide d_model=2048"),
        (dict(n_heads=32, n_kv_heads=6), "n_kv_heads=6 must divide n_heads=32"),
        (dict(d_model=-8), "d_model must be positive"),
        (dict(n_layers=0), "n_layers must be positive"),
        (dict(vocab_size=-1), "vocab_size must be positive"),
        (dict(head_dim=-64), "head_dim must be positive"),
        (dict(attn_dropout=1.5), "attn_dropout must be in"),
        (dict(n_layers="24"), "n_layers must be an integer"),
        (dict(n_layers=True), "n_layers must be an integer"),
        (dict(mlp_act="tanh"), "mlp_act must be one of"),
        (dict(eos_token_id=40000), "eos_token_id=40000 is outside the vocabulary"),
        (dict(rope_scaling={"rope_type": "yarn"}), "rope_scaling supports"),
    ],
)
def test_invalid_configs_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**fields)


def test_invalid_preset_override_is_caught():
    with pytest.raises(ConfigError, match="n_kv_heads=3 must divide n_heads=4"):
        ModelConfig.from_preset("tiny", n_kv_heads=3)


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("d_model: 64\nn_layer: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown ModelConfig field\(s\) \['n_layer'\]"):
        ModelConfig.load(path)


def test_bad_value_in_file_names_file_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"n_heads": 32, "n_kv_heads": 5}))
    with pytest.raises(ConfigError, match=r"bad\.json: ModelConfig.n_kv_heads=5"):
        ModelConfig.load(path)


def test_yaml_exponent_without_dot_is_read_as_a_number(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("rope_theta: 5e5\n")  # YAML 1.1 reads this as the string '5e5'
    assert ModelConfig.load(path).rope_theta == 500000.0


def test_replace_validates():
    with pytest.raises(ConfigError, match="n_kv_heads"):
        ModelConfig().replace(n_kv_heads=7)


def test_dotted_overrides_apply_on_load(tmp_path):
    path = tmp_path / "m.yaml"
    ModelConfig.from_preset("tiny").save(path)
    c = ModelConfig.load(path, ["--n_layers", "4", "--rope_theta=5e5", "--mlp-gated", "true"])
    assert (c.n_layers, c.rope_theta, c.mlp_gated) == (4, 500000.0, True)
    with pytest.raises(ConfigError, match=r"unknown ModelConfig field\(s\) \['n_layer'\]"):
        ModelConfig.load(path, ["--n_layer", "4"])
    with pytest.raises(ConfigError, match="has no value"):
        ModelConfig.load(path, ["--n_layers"])
