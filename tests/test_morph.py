import pytest

from tokenizer.clean import normalize
from tokenizer.morph import STARTER_DICT, Morphology, UserDictError, build_user_dict, read_terms

TERMS = ["糖尿病", "既往歴", "HbA1c", "浸潤影", "くも膜下出血", "心房細動", "アムロジピン", "SpO2"]
SENTENCE = "糖尿病の既往歴があり、HbA1cは8.1%。胸部X線で浸潤影を認めた。くも膜下出血と心房細動、アムロジピン内服、SpO2は95%。"


@pytest.fixture(scope="module")
def medical(tmp_path_factory):
    out = tmp_path_factory.mktemp("dict") / "user.dic"
    build_user_dict(STARTER_DICT, out, normalize)
    return Morphology(out)


def test_medical_terms_are_single_morphemes_with_the_dictionary(medical):
    morphemes = medical.split(SENTENCE)
    assert "".join(morphemes) == SENTENCE
    for term in TERMS:
        assert term in morphemes, term


def test_plain_unidic_splits_them():
    morphemes = Morphology().split(SENTENCE)
    assert "糖尿病" not in morphemes and "HbA1c" not in morphemes


def test_ordinary_words_around_terms_are_unchanged(medical):
    assert medical.split("今日は雨が降っている") == Morphology().split("今日は雨が降っている")


def test_starter_dictionary_is_valid_and_covers_each_category():
    rows = read_terms(STARTER_DICT, normalize)
    assert len(rows) >= 400
    assert {c for _, _, c in rows} == {"disease", "symptom", "finding", "drug", "exam", "anatomy", "procedure"}
    assert len({s for s, _, _ in rows}) == len(rows)


@pytest.mark.parametrize(
    "content, message",
    [
        ("term,reading\n", r"line 1: header must be"),
        ("surface,reading,category\n糖尿病,トウニョウビョウ\n", r"line 2: expected 3 fields"),
        ("surface,reading,category\n糖尿病,トウニョウビョウ,illness\n", r"line 2: category 'illness'"),
        ("surface,reading,category\n糖 尿病,トウニョウビョウ,disease\n", r"line 2: surface '糖 尿病' is empty or contains"),
        ("surface,reading,category\n", r"no terms"),
    ],
)
def test_bad_term_lists_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "terms.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserDictError, match=message):
        build_user_dict(path, tmp_path / "user.dic", normalize)


def test_surfaces_are_normalised_like_encoded_text(tmp_path):
    path = tmp_path / "terms.csv"
    path.write_text("surface,reading,category\nＨｂＡ１ｃ,*,exam\n", encoding="utf-8")
    assert read_terms(path, normalize) == [("HbA1c", "*", "exam")]


def test_a_failing_dictionary_build_is_an_error_not_a_crash(tmp_path, monkeypatch):
    # mecab-dict-index aborts on a broken system dictionary; it runs in a subprocess, so we survive.
    fake = tmp_path / "fake_unidic"
    fake.mkdir()
    (fake / "left-id.def").write_text("5146 名詞,普通名詞,一般,*,*,*,*,*,漢\n5147 名詞,普通名詞,一般,*,*,*,*,*,外\n"
                                      "5148 名詞,普通名詞,一般,*,*,*,*,*,記号\n", encoding="utf-8")
    monkeypatch.setattr("tokenizer.morph.unidic_dir", lambda: str(fake))
    with pytest.raises(UserDictError, match="building the MeCab dictionary failed"):
        build_user_dict(STARTER_DICT, tmp_path / "user.dic", normalize)


def test_dictionaries_in_paths_with_spaces_build_and_load(tmp_path):
    # MeCab's arguments are split like a shell's: the path is quoted, and the compiler (which joins
    # its arguments with spaces) writes to a temporary folder first.
    out = tmp_path / "my dict" / "user.dic"
    out.parent.mkdir()
    build_user_dict(STARTER_DICT, out, normalize)
    assert "糖尿病" in Morphology(out).split("糖尿病の既往")


def test_missing_unreadable_and_broken_dictionaries_are_user_dict_errors(tmp_path):
    with pytest.raises(UserDictError, match=r"nope\.csv: no such file; --user-dict takes a term list CSV"):
        read_terms(tmp_path / "nope.csv", normalize)
    sjis = tmp_path / "terms.csv"
    sjis.write_bytes("surface,reading,category\n糖尿病,*,disease\n".encode("cp932"))
    with pytest.raises(UserDictError, match=r"terms\.csv: not a UTF-8 term list"):
        read_terms(sjis, normalize)
    with pytest.raises(UserDictError, match=r"nope\.dic: no such MeCab user dictionary"):
        Morphology(tmp_path / "nope.dic")
    broken = tmp_path / "broken.dic"
    broken.write_bytes(b"not a dictionary")
    with pytest.raises(UserDictError, match=r"broken\.dic: MeCab cannot load this user dictionary \(dictionary file is broken"):
        Morphology(broken)


def test_a_failed_build_leaves_an_existing_dictionary_alone(tmp_path, monkeypatch):
    out = tmp_path / "user.dic"
    build_user_dict(STARTER_DICT, out, normalize)
    before = out.read_bytes()
    fake = tmp_path / "fake_unidic"
    fake.mkdir()
    (fake / "left-id.def").write_text("5146 名詞,普通名詞,一般,*,*,*,*,*,漢\n5147 名詞,普通名詞,一般,*,*,*,*,*,外\n"
                                      "5148 名詞,普通名詞,一般,*,*,*,*,*,記号\n", encoding="utf-8")
    monkeypatch.setattr("tokenizer.morph.unidic_dir", lambda: str(fake))
    with pytest.raises(UserDictError, match=r"building the MeCab dictionary failed \(exit \d+\): [^\n]+$"):
        build_user_dict(STARTER_DICT, out, normalize)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["fake_unidic", "user.dic"]
