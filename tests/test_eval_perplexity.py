import math

import pytest

from evaluate import main
from slm.eval.perplexity import perplexity
from slm.lm import SLMAdapter


def test_perplexity_sums_documents_and_bits_per_character_divides_by_their_characters(slm_dir):
    lm = SLMAdapter.from_folder(slm_dir, max_length=16)
    docs = ["糖尿病の既往歴があり、ＨｂＡ１ｃ 7.2%で内服加療中。" * 4, "発熱あり。"]
    result = perplexity(lm, docs)
    parts = [lm.document_nll(d) for d in docs]
    assert result["tokens"] == sum(n for _, n in parts) and result["nll"] == pytest.approx(sum(x for x, _ in parts))
    assert result["perplexity"] == pytest.approx(math.exp(result["nll"] / result["tokens"]))
    # the text as given (full-width characters and all): the same denominator for every model and tokenizer
    assert result["characters"] == sum(map(len, docs)) and result["documents"] == 2
    assert result["bits_per_character"] == pytest.approx(result["nll"] / math.log(2) / result["characters"])
    assert 1 < result["perplexity"] < lm.tokenizer.vocab_size * 2


def test_cli(slm_dir, tmp_path, capsys):
    (tmp_path / "h.txt").write_text("発熱あり。\n\n咳嗽なし。\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("頭痛あり。\n\n".encode() + b"\xff\xfe broken\n\n")  # a damaged document
    assert main(["perplexity", "--model", str(slm_dir), "--data", str(tmp_path / "h.txt"), str(tmp_path / "bad.txt"),
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| 3 |" in out and "1 unreadable lines skipped" in out
    assert (tmp_path / "o" / "metrics.json").is_file()
