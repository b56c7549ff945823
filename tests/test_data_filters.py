import pytest
from conftest import SAMPLE_CORPUS

from slm.config import ConfigError
from slm.data.document import Document
from slm.data.filters import (DEFAULT_WORDLIST, AdultWords, Copyright, FilterConfig, IncompleteSentences,
                              JapaneseRatio, Length, build_filters, load_wordlist)
from tokenizer.clean import clean

NOTE = (
    "【看護記録】72歳女性 心不全増悪 入院4日目\n"
    "S: 「夜は横になっても苦しくなくなった」\n"
    "O: 体重 54.2kg、血圧 118/68mmHg、脈拍 78回/分、SpO2 96%(room air)。両下腿浮腫は軽減している。\n"
    "A: 利尿が得られ、うっ血症状は改善傾向にある。\n"
    "P: 毎朝の体重測定を継続し、3日で2kg以上の増加時は医師へ報告する。"
)
EXAM_ITEM = (
    "【問題1】\n"
    "65歳の男性。2時間前から持続する前胸部痛で来院した。まず行うべき検査はどれか。\n"
    "a. 12誘導心電図 b. 腹部超音波 c. 頭部CT d. 尿検査 e. 脳波\n"
    "【正解】a\n"
    "【解説】急性冠症候群を疑う胸痛では、来院後10分以内に12誘導心電図を記録する。"
)


def doc(text: str) -> Document:
    return Document(text=text, source="test", path="test.txt", line=1)


def kept(stage, text: str) -> bool:
    return stage(doc(text)) is not None


def test_default_filters_keep_every_sample_corpus_document():
    stages = build_filters(FilterConfig())
    texts = [t for p in sorted(SAMPLE_CORPUS.glob("*.txt")) for t in p.read_text(encoding="utf-8").strip().split("\n\n")]
    assert len(texts) == 171
    for text in texts:
        d = doc(clean(text).strip())  # the pipeline cleans before it filters
        for stage in stages:
            assert stage(d) is not None, (stage.name, text[:40])


def test_build_filters_order_and_switches():
    assert [s.name for s in build_filters(FilterConfig())] == [
        "length", "japanese_ratio", "incomplete_sentences", "copyright", "adult_words"]
    config = FilterConfig.from_dict({"copyright": {"enabled": False}, "length": {"enabled": False}})
    assert [s.name for s in build_filters(config)] == ["japanese_ratio", "incomplete_sentences", "adult_words"]


def test_filter_config_yaml_round_trip(tmp_path):
    config = FilterConfig.from_dict({"length": {"min_chars": 10, "max_chars": None},
                                     "adult_words": {"max_hits": 1}})
    config.save(tmp_path / "filters.yaml")
    assert FilterConfig.load(tmp_path / "filters.yaml") == config


@pytest.mark.parametrize("fields, message", [
    ({"incomplete_sentences": {"max_ratio": 1.5}}, "IncompleteSentencesConfig.max_ratio"),
    ({"japanese_ratio": {"min_ratio": -0.1}}, "JapaneseRatioConfig.min_ratio"),
    ({"adult_words": {"max_hits": 0}}, "AdultWordsConfig.max_hits"),
    ({"adult_words": {"wordlist": "no/such/list.txt"}}, "AdultWordsConfig.wordlist"),
    ({"length": {"min_chars": 100, "max_chars": 50}}, "LengthConfig.max_chars"),
    ({"length": {"min_chars": "50"}}, "LengthConfig.min_chars must be an integer"),
    ({"lenght": {}}, "unknown FilterConfig field"),
])
def test_filter_config_errors_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        FilterConfig.from_dict(fields)


def test_length():
    stage = Length(min_chars=20, max_chars=60)
    assert kept(stage, "血圧 132/84mmHg、脈拍 88回/分、体温 37.8℃。")
    assert not kept(stage, "ページが見つかりません")
    assert not kept(stage, "胸痛。\n\n\n          \n\t\t")  # whitespace does not count
    assert not kept(stage, "心不全の治療は利尿薬と血管拡張薬を中心に行う。" * 3)
    assert kept(Length(min_chars=20, max_chars=None), "心不全の治療は利尿薬と血管拡張薬を中心に行う。" * 100)


def test_japanese_ratio():
    stage = JapaneseRatio(min_ratio=0.2)
    assert kept(stage, NOTE)
    # Lab-heavy clinical lines are mostly Latin letters and digits, and still Japanese.
    assert kept(stage, "検査所見: WBC 10,200/μL、Hb 14.1g/dL、CRP 8.4mg/dL、Na 139mEq/L。炎症反応の上昇を認めた。")
    assert not kept(stage, "Patients with heart failure should weigh themselves every morning. 体重測定。")
    assert not kept(stage, "function f(x) { return x * 2; } // 関数")
    assert not kept(stage, "   \n  ")


def test_incomplete_sentences():
    stage = IncompleteSentences(max_ratio=0.7)
    assert kept(stage, NOTE)  # a heading line among sentences
    assert kept(stage, EXAM_ITEM)  # 3 of 5 lines are labels and choices
    assert not kept(IncompleteSentences(max_ratio=0.5), EXAM_ITEM)
    menu = "ホーム\n診療科のご案内\n外来受診の方へ\n入院・面会の方へ\nアクセス\n当院は地域の中核病院です。"
    assert not kept(stage, menu)
    wrapped = "心房細動は高齢者に多い不整脈であり、\n脳梗塞の原因となるため、\n抗凝固療法の適応を\nCHADS2スコアで評価する。"
    assert not kept(stage, wrapped)


@pytest.mark.parametrize("line", [
    "「痰がからんで出しにくい」",  # quoted speech without 。
    "体温は37.2℃に低下した(図1)。",
    "「痰が出しにくい。」",  # closing brackets after sentence-final punctuation
    "再検でも陰性であった。)",
    "症状は改善したのか?",
    "Blood cultures were negative.",
])
def test_complete_lines(line):
    assert kept(IncompleteSentences(max_ratio=0.0), line)


@pytest.mark.parametrize("text", [
    "© 2023 あおば総合病院",
    "Ⓒ あおば総合病院",
    "Copyright (c) 2021 Aoba Medical Inc.",
    "COPYRIGHT 2019 日本臨床看護研究会",
    "(C) 2010-2024 あおば総合病院 広報室",
    "All Rights Reserved.",
    "本サイトに掲載の記事・写真の無断転載を禁じます。",
    "本資料の無断複製・転用はご遠慮ください。",
    "掲載内容の転載を固く禁じます。",
    "転載禁止",
    "掲載記事の著作権は株式会社あおばメディカルに帰属します。",
])
def test_copyright_notices_are_removed(text):
    assert not kept(Copyright(), "糖尿病の食事療法について解説します。\n" + text)


@pytest.mark.parametrize("text", [
    NOTE,
    "患者向けの説明資料を作成する際は、引用する図表の著作権に配慮する。",
    "学会発表で他者の写真を用いる場合は、著作権者の許諾を得る必要がある。",
    "調査結果を以下に示す。(a) 2017年の調査 (b) 2018年の調査 (c) 2019年の調査",
    "copyright をめぐる議論は医学教育の分野でも増えている。",
])
def test_mentions_of_copyright_are_kept(text):
    assert kept(Copyright(), text)


def test_shipped_wordlist_leaves_out_clinical_terms():
    words = load_wordlist(DEFAULT_WORDLIST)
    assert len(words) >= 30
    innocent = ["性器", "性交", "勃起", "射精", "乳房", "膣", "陰茎", "精液", "避妊", "性病", "性感染症",
                "角膜エロージョン", "フェラーリ", "AV block", "アダルトチルドレン", "正常位置", "白痴女", "熟女眞"]
    assert not [(word, term) for term in innocent for word in words if word in term]


def test_adult_words_counts_hits():
    stage = AdultWords(load_wordlist(DEFAULT_WORDLIST), max_hits=2)
    spam = "無料のエロ動画を毎日更新。人気のAV女優の新作エロ動画はこちら。"
    assert not kept(stage, spam)
    # One mention in a case history is incidental and stays at the default threshold.
    history = "28歳女性。性風俗店勤務歴あり。2週間前から外陰部の無痛性潰瘍を自覚し受診した。梅毒血清反応陽性。"
    assert kept(stage, history)
    assert not kept(AdultWords(load_wordlist(DEFAULT_WORDLIST), max_hits=1), history)


@pytest.mark.parametrize("text", [
    "性感染症の予防には避妊具の使用が有効であり、性交渉のパートナーにも検査を勧める。",
    "陰茎の勃起不全(ED)や射精障害は糖尿病の合併症として生じうる。精液検査を行う。",
    "乳房のしこりを自覚し受診した。膣分泌物の異常はない。性器出血なし。",
    "角膜エロージョンに対して点眼治療を開始した。",
    "房室ブロック(AV block)を認め、ペースメーカー植込みを検討した。",
    "アダルトチルドレンという概念は家族療法の分野で用いられる。",
])
def test_adult_words_keep_clinical_text(text):
    assert kept(AdultWords(load_wordlist(DEFAULT_WORDLIST), max_hits=1), text)


def test_custom_wordlist_comments_and_widths(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# a comment\n\nＮＧワード\n  禁止語  \n", encoding="utf-8")
    assert load_wordlist(path) == ["NGワード", "禁止語"]  # normalised as the corpus is
    stage = build_filters(FilterConfig.from_dict({"adult_words": {"wordlist": str(path), "max_hits": 1}}))[-1]
    assert stage.name == "adult_words"
    assert not kept(stage, "この文章にはngワードが含まれる。")  # Latin letters match in any case
    (tmp_path / "empty.txt").write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_wordlist(tmp_path / "empty.txt")


def test_copyright_sign_survives_cleaning_so_the_filter_sees_it():
    doc = Document(clean("© 2023 某出版社 本ページの内容は教育目的で公開しています。"), "s", "p", 1)
    assert Copyright()(doc) is None
