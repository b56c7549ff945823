from slm.demo import run


def test_demo_builds_saves_reloads_and_generates(tmp_path, capsys):
    out = run(tmp_path / "model")
    assert out.shape == (2, 4 + 12)
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert "parameters" in capsys.readouterr().out
