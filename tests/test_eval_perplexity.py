import math

import pytest
import torch

from slm.config import ModelConfig
from slm.eval.perplexity import perplexity
from slm.model import SLM


def test_windows_score_every_token_once_and_bpc_uses_characters(tok):
    torch.manual_seed(0)
    model = SLM(ModelConfig.from_preset("tiny", vocab_size=tok.vocab_size, max_seq_len=32)).eval()
    text = "糖尿病の既往歴があり、HbA1c 7.2%で内服加療中。" * 8
    n = len(tok.encode(text, add_bos=True, add_eos=True))
    short = perplexity(model, tok, [text], max_len=16)
    assert short["tokens"] == n - 1 and short["characters"] == len(tok.normalize(text))
    assert short["bits_per_character"] == pytest.approx(short["nll"] / math.log(2) / short["characters"])
    full = perplexity(model, tok, [text], max_len=32)
    assert full["tokens"] == short["tokens"]
    assert 1 < short["perplexity"] < tok.vocab_size * 2


def test_cli(tok, tmp_path, capsys):
    from evaluate import main

    SLM(ModelConfig.from_preset("tiny", vocab_size=tok.vocab_size)).save_pretrained(tmp_path / "m")
    tok.save(tmp_path / "m" / "tokenizer")
    (tmp_path / "h.txt").write_text("発熱あり。\n\n咳嗽なし。\n", encoding="utf-8")
    assert main(["perplexity", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "h.txt")]) == 0
    assert "bits/character" in capsys.readouterr().out
