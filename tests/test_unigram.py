import pytest

from conftest import SAMPLE_CORPUS
from tokenizer import JapaneseTokenizer
from tokenizer.train import main as train_cli
from tokenizer.unigram import TokenizerTrainingError, train_tokenizer


def test_vocabulary_layout_and_settings(tok):
    assert tok.vocab_size == 3000
    assert [tok.id_to_piece(i) for i in range(7)] == ["<unk>", "<begin_of_text>", "<end_of_text>", "\n",
                                                      "<|system|>", "<|user|>", "<|assistant|>"]
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.newline_id) == (1, 2, 2, 3)
    assert tok.id_to_piece(7) == "<0x00>"  # byte fallback pieces follow the specials
    u = tok.settings["unigram"]
    assert (u["shrinking_factor"], u["max_sentencepiece_length"], u["num_sub_iterations"]) == (0.75, 16, 8)
    assert u["normalization_rule_name"] == "identity" and u["model_type"] == "unigram"


def test_pieces_never_cross_morpheme_boundaries(tok):
    text = "糖尿病の既往歴があり、HbA1c 7.2%で胸部X線にて浸潤影を認めた。"
    line = tok.normalize(text).replace(" ", "▁")
    bounds, pos = set(), 0
    for m in tok.morphemes(tok.normalize(text)):
        pos += len(m)
        bounds.add(pos)
    pieces = [tok.id_to_piece(i) for i in tok.encode(text)]
    assert "".join(pieces) == line
    ends, pos = [], 0
    for p in pieces:
        pos += len(p)
        ends.append(pos)
    assert bounds <= set(ends)


def test_report_path_without_chat_tokens(tmp_path):
    train_tokenizer([SAMPLE_CORPUS], tmp_path, vocab_size=2500, chat_tokens=False, num_workers=1, progress=False)
    t = JapaneseTokenizer.load(tmp_path)
    assert list(t.special_tokens) == ["<begin_of_text>", "<end_of_text>", "\n"]
    assert t.id_to_piece(4) == "<0x00>"
    with pytest.raises(KeyError, match="not a special token"):
        t.token_id("<|user|>")


def test_too_small_corpus_is_a_clear_error_or_a_smaller_vocabulary(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("患者は発熱と咳嗽を訴えた。\n胸部X線で浸潤影を認めた。\n", encoding="utf-8")
    with pytest.raises(TokenizerTrainingError, match=r"too small for vocab_size=5000.*at most \d+ pieces.*--allow-smaller-vocab"):
        train_tokenizer([corpus], tmp_path / "t1", vocab_size=5000, num_workers=1, progress=False)
    summary = train_tokenizer([corpus], tmp_path / "t2", vocab_size=5000, allow_smaller_vocab=True, num_workers=1,
                              progress=False)
    assert 263 < summary["vocab_size"] < 5000
    assert JapaneseTokenizer.load(tmp_path / "t2").vocab_size == summary["vocab_size"]


def test_vocabulary_smaller_than_the_fixed_ids_is_refused(tmp_path):
    with pytest.raises(TokenizerTrainingError, match="leaves no room"):
        train_tokenizer([SAMPLE_CORPUS], tmp_path, vocab_size=200, progress=False)


def test_cli_trains_and_reports_bad_input_files(tmp_path, capsys):
    assert train_cli(["--input", str(SAMPLE_CORPUS), "--vocab-size", "2500", "--out", str(tmp_path / "t"),
                      "--num-workers", "2"]) == 0
    assert JapaneseTokenizer.load(tmp_path / "t").vocab_size == 2500
    bad = tmp_path / "sjis.txt"
    bad.write_bytes("心不全".encode("cp932"))
    assert train_cli(["--input", str(bad), "--out", str(tmp_path / "u")]) == 2
    assert "sjis.txt line 1: not valid utf-8" in capsys.readouterr().err


def test_overwrite_replaces_an_existing_tokenizer_only_when_asked(tmp_path):
    from tokenizer.folders import FolderExistsError

    train_tokenizer([SAMPLE_CORPUS], tmp_path / "t", vocab_size=2500, num_workers=1, progress=False)
    with pytest.raises(FolderExistsError, match=r"already holds a tokenizer.*overwrite=True"):
        train_tokenizer([SAMPLE_CORPUS], tmp_path / "t", vocab_size=2600, num_workers=1, progress=False)
    assert JapaneseTokenizer.load(tmp_path / "t").vocab_size == 2500
    train_tokenizer([SAMPLE_CORPUS], tmp_path / "t", vocab_size=2600, user_dict=None, num_workers=1, progress=False,
                    overwrite=True)
    assert JapaneseTokenizer.load(tmp_path / "t").vocab_size == 2600
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["tokenizer.json", "tokenizer.model"]  # no stale user.dic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
