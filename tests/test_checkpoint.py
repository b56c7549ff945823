import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import small_config, small_model
from slm.checkpoint import CheckpointError, atomic_write
from slm.model import SLM


def test_save_and_load_round_trip_is_exact(tmp_path):
    model = small_model(mlp_gated=True)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = SLM.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.randint(0, 256, (2, 9))
    assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_dtype_is_kept_or_converted(tmp_path):
    small_model().to(torch.bfloat16).save_pretrained(tmp_path)
    assert SLM.from_pretrained(tmp_path).embed.weight.dtype == torch.bfloat16
    assert SLM.from_pretrained(tmp_path, dtype=torch.float32).embed.weight.dtype == torch.float32


def test_tied_head_is_stored_once_and_tied_again(tmp_path):
    small_model(tie_embeddings=True).save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    loaded = SLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.embed.weight


def test_config_weights_mismatch_names_tensor_and_shapes(tmp_path):
    small_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["d_mlp"] = 128
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'layers\.0\.mlp\.up_proj\.weight' has shape \(256, 64\), config expects \(128, 64\)"):
        SLM.from_pretrained(tmp_path)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    small_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["mlp_gated"], config["n_layers"] = True, 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        SLM.from_pretrained(tmp_path)
    assert "missing tensor 'layers.0.mlp.gate_proj.weight' (config expects shape (256, 64))" in str(e.value)
    assert "unexpected tensor 'layers.1.attn.q_proj.weight'" in str(e.value)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        SLM.from_pretrained(tmp_path)
    small_model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        SLM.from_pretrained(tmp_path)


def test_failed_write_leaves_the_previous_file_and_no_temporaries(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")

    def crash(path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_config_file_is_json_even_though_written_under_a_temporary_name(tmp_path):
    SLM(small_config()).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["d_model"] == 64
