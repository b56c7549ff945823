"""The tokenizer as every later stage uses it: lossless, special tokens, batches, save/load."""

import pytest

from conftest import SAMPLE_CORPUS
from tokenizer import JapaneseTokenizer

ADVERSARIAL = [
    "",
    "\n",
    "\n\n\n",
    "  前後に空白  ",
    "ＨｂＡ１ｃ７．２％ ｶﾘｳﾑ 全角と半角のmixed Ｔｅｘｔ",
    "絵文字😀🏥💊と結合文字👨‍⚕️、異体字葛󠄀",
    "制御文字\x00\x01\x07\x1b[31m\x7f\u200b\ufeffを含む\r\n行\r",
    "タブ\tと\u3000全角空白と\u2028行区切り",
    "<|user|>質問<|assistant|>回答<end_of_text><begin_of_text>\n<|system|>",
    "▁メタスペース▁そのもの▁",
    "韓国語 한국어 русский العربية",
    "ｷﾞｬｰ!!!!!!～～～",
    "HbA1c 7.2%, 5mg/日, SpO2 95%, T2N0M0, α β γ, ① ② ③, 38.5℃",
    "長い行" * 20000,
]


def test_lossless_on_every_line_of_the_sample_corpus(tok):
    n = 0
    for path in sorted(SAMPLE_CORPUS.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            assert tok.decode(tok.encode(line)) == tok.normalize(line), (path.name, line)
            n += 1
    assert n > 300
    assert tok.fallback_lines == 0


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_lossless_on_adversarial_input(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == tok.normalize(text)
    assert tok.encode(tok.decode(ids)) == ids  # normalised text is a fixed point
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_whole_documents_keep_their_newlines(tok):
    doc = (SAMPLE_CORPUS / "nursing_notes.txt").read_text(encoding="utf-8")[:3000]
    ids = tok.encode(doc)
    assert ids.count(tok.newline_id) == tok.normalize(doc).count("\n")
    assert tok.decode(ids) == tok.normalize(doc)


def test_special_token_strings_in_text_are_not_control_tokens(tok):
    specials = set(tok.special_tokens.values())
    ids = tok.encode("<|user|>こんにちは<end_of_text>")
    assert not specials & set(ids)
    assert tok.decode(ids) == "<|user|>こんにちは<end_of_text>"


def test_bos_eos_and_skipping_special_tokens(tok):
    ids = tok.encode("発熱あり。\n咳嗽なし。", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "<begin_of_text>発熱あり。\n咳嗽なし。<end_of_text>"
    assert tok.decode(ids, skip_special_tokens=True) == "発熱あり。\n咳嗽なし。"  # newline is text
    chat = [tok.token_id("<|user|>"), *tok.encode("頭痛"), tok.token_id("<|assistant|>")]
    assert tok.decode(chat) == "<|user|>頭痛<|assistant|>"


def test_medical_terms_encode_compactly(tok):
    for term in ("糖尿病", "既往歴", "HbA1c", "浸潤影"):
        assert [tok.id_to_piece(i) for i in tok.encode(term)][0].startswith(term[:1])
    assert len(tok.encode("糖尿病")) == 1  # frequent in the sample corpus and a single morpheme


def test_encode_batch_in_processes_equals_serial(tok):
    texts = [line for line in (SAMPLE_CORPUS / "case_reports.txt").read_text(encoding="utf-8").split("\n")][:300]
    serial = [tok.encode(t, add_eos=True) for t in texts]
    assert tok.encode_batch(texts, add_eos=True) == serial
    assert tok.encode_batch(texts, num_workers=2, add_eos=True, chunksize=16) == serial
    assert tok.encode_batch([], num_workers=2) == []
    assert tok.decode_batch(serial[:3]) == [tok.decode(s) for s in serial[:3]]


def test_save_and_load_reproduce_the_same_pipeline(tok, tmp_path):
    tok.save(tmp_path / "copy")
    copy = JapaneseTokenizer.load(tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["tokenizer.json", "tokenizer.model", "user.dic",
                                                                     "user_terms.csv"]
    text = (SAMPLE_CORPUS / "drug_explanations.txt").read_text(encoding="utf-8")[:2000]
    assert copy.encode(text) == tok.encode(text)
    assert copy.clean_config == tok.clean_config


def test_loading_a_folder_without_settings_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a tokenizer folder"):
        JapaneseTokenizer.load(tmp_path)


def test_pickles_by_reloading_its_folder(tok):
    import pickle

    copy = pickle.loads(pickle.dumps(tok))
    assert copy.encode("心房細動に対しDOAC内服中。") == tok.encode("心房細動に対しDOAC内服中。")


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_save_replaces_a_tokenizer_folder_whole_and_refuses_other_folders(tok, tmp_path):
    from tokenizer.folders import FolderExistsError

    dest = tmp_path / "t"
    dest.mkdir()
    (dest / "user.dic").write_bytes(b"stale")  # a file the new folder might not have must not survive
    (dest / "tokenizer.json").write_text("{}")
    tok.save(dest)
    assert _files(dest) == _files(tok.directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # nothing left beside it
    mixed = tmp_path / "model"
    mixed.mkdir()
    (mixed / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(FolderExistsError, match=r"model is not empty and holds files that do not belong to a tokenizer \(model\.safetensors\)"):
        tok.save(mixed)
    assert _files(mixed) == {"model.safetensors": b"weights"}


def test_a_save_that_fails_halfway_changes_nothing(tok, tmp_path, monkeypatch):
    import shutil

    dest = tmp_path / "t"
    tok.save(dest)
    before = _files(dest)
    calls = []

    def copy_then_fail(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return shutil.copy(src, dst)

    monkeypatch.setattr("tokenizer.japanese.shutil.copy2", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        tok.save(dest)
    assert _files(dest) == before and sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_save_into_its_own_folder_keeps_added_tokens(tok, tmp_path):
    tok.save(tmp_path / "t")
    t = JapaneseTokenizer.load(tmp_path / "t")
    t.add_special_tokens(["<|tool|>"])
    t.save(t.directory)
    again = JapaneseTokenizer.load(tmp_path / "t")
    assert again.token_id("<|tool|>") == tok.vocab_size and again.encode("糖尿病") == tok.encode("糖尿病")
