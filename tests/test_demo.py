from slm.demo import PROMPTS, run


def test_demo_trains_tokenizer_builds_saves_reloads_and_generates(tmp_path, capsys):
    texts = run(tmp_path, vocab_size=3000)
    assert len(texts) == 4
    assert all(t.startswith(p) for t, p in zip(texts, PROMPTS * 2))
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "model" / "tokenizer" / "tokenizer.model").is_file()
    assert "parameters" in capsys.readouterr().out
