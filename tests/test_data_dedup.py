import math

import numpy as np
import pytest

from slm.config import ConfigError
from slm.data.dedup import (BloomFilter, DedupConfig, ExactDedup, NearDedup, SentenceDedup, build_dedup,
                            split_sentences)
from slm.data.document import Document

CASE = (
    "症例は68歳男性。主訴は労作時の前胸部圧迫感である。約2か月前から坂道を上る際に胸部の締め付け感を自覚していた。"
    "来院当日の朝、安静時にも同様の症状が20分以上持続したため救急要請となった。心電図でⅡ・Ⅲ・aVFにST上昇を認め、"
    "急性下壁心筋梗塞と診断して緊急冠動脈造影を施行した。右冠動脈近位部の完全閉塞に対して経皮的冠動脈インターベンション"
    "を行い、再灌流に成功した。術後経過は良好で、第10病日に心臓リハビリテーションを継続する方針で退院となった。"
)
OTHER = (
    "2型糖尿病の薬物療法では、まず生活習慣の改善を行ったうえで、肥満の有無や腎機能を考慮して薬剤を選択する。"
    "メトホルミンは肝臓での糖新生を抑制し、体重を増加させにくい。eGFRが30mL/分/1.73m²未満では禁忌となる。"
    "SGLT2阻害薬は尿中へのブドウ糖排泄を促進し、心不全や慢性腎臓病の進展抑制効果も報告されている。"
)
NOTICE = "当院の診療内容に関するお問い合わせは、平日の9時から17時まで受け付けております。"


def doc(text: str) -> Document:
    return Document(text=text, source="web", path="pages.jsonl", line=7, meta={"url": "x"})


# ---------------------------------------------------------------- Bloom filter


def test_bloom_filter_add_and_contains():
    bloom = BloomFilter(capacity=1000, error_rate=0.01)
    assert b"key" not in bloom
    assert bloom.add(b"key") is False
    assert bloom.add(b"key") is True
    assert b"key" in bloom
    assert bloom.count == 1


def test_bloom_filter_size_and_false_positive_rate():
    bloom = BloomFilter(capacity=2000, error_rate=0.01)
    assert bloom.num_hashes == 7  # (m / n) ln 2 at 9.6 bits per key
    assert bloom.nbytes == math.ceil(bloom.num_bits / 8) == 2397
    keys = [f"入院{i}日目の記録".encode() for i in range(2000)]
    for key in keys:
        bloom.add(key)
    assert all(key in bloom for key in keys)  # no false negatives
    false_positives = sum(f"外来{i}".encode() in bloom for i in range(20000))
    assert 0.005 < false_positives / 20000 < 0.015
    assert bloom.expected_error_rate == pytest.approx(0.01, rel=0.1)


def test_bloom_filter_memory_is_fixed():
    bloom = BloomFilter(capacity=100, error_rate=0.01)
    before = bloom.nbytes
    for i in range(1000):  # ten times the capacity: more false positives, not more memory
        bloom.add(str(i).encode())
    assert bloom.nbytes == before
    assert bloom.expected_error_rate > 0.5


def test_bloom_filter_state_dict_round_trip(tmp_path):
    bloom = BloomFilter(capacity=500, error_rate=0.001)
    for i in range(300):
        bloom.add(f"文{i}".encode())
    np.savez(tmp_path / "bloom.npz", **bloom.state_dict())
    restored = BloomFilter(capacity=500, error_rate=0.001)
    restored.load_state_dict(dict(np.load(tmp_path / "bloom.npz")))
    assert restored.count == 300
    assert all(f"文{i}".encode() in restored for i in range(300))
    assert np.array_equal(restored.bits, bloom.bits)
    with pytest.raises(ValueError, match="same capacity and error_rate"):
        BloomFilter(capacity=50, error_rate=0.001).load_state_dict(bloom.state_dict())


@pytest.mark.parametrize("capacity, error_rate", [(0, 0.01), (10, 0.0), (10, 1.0)])
def test_bloom_filter_rejects_bad_sizes(capacity, error_rate):
    with pytest.raises(ValueError):
        BloomFilter(capacity, error_rate)


# ---------------------------------------------------------------- sentences


def test_split_sentences_keeps_delimiters_and_brackets():
    text = "発熱あり。「咳が出る。」と訴えた。本当に？！\n見出し\n\n次の段落。"
    sentences = split_sentences(text)
    assert "".join(sentences) == text
    assert sentences == ["発熱あり。", "「咳が出る。」", "と訴えた。", "本当に？！\n", "見出し\n\n", "次の段落。"]


# ---------------------------------------------------------------- stages


def test_exact_dedup_ignores_whitespace():
    stage = ExactDedup(capacity=100, error_rate=1e-6)
    assert stage(doc(CASE)) is not None
    assert stage(doc(CASE.replace("。", "。\n"))) is None  # the same text wrapped differently
    assert stage(doc("  " + CASE + "\n")) is None
    assert stage(doc(OTHER)) is not None
    assert stage.stats["distinct_documents"] == 2


def test_sentence_dedup_removes_sentences_seen_in_earlier_documents():
    stage = SentenceDedup(min_chars=20, capacity=1000, error_rate=1e-6)
    first = doc(CASE + NOTICE)
    assert stage(first) is first  # nothing seen yet: the same object goes on
    second = doc("外来受診のご案内です。" + NOTICE + "\n" + OTHER)
    out = stage(second)
    assert out.text == "外来受診のご案内です。" + OTHER
    assert (out.source, out.path, out.line, out.meta) == ("web", "pages.jsonl", 7, {"url": "x"})
    assert NOTICE in second.text  # the input is not changed
    assert stage.stats["removed_sentences"] == 1
    assert stage.stats["removed_chars"] == len(NOTICE) + 1  # with its line break


def test_sentence_dedup_keeps_short_stock_phrases_and_repeats_within_a_document():
    stage = SentenceDedup(min_chars=20, capacity=1000, error_rate=1e-6)
    note = "意識清明。特記事項なし。バイタルサインに著変なし。転倒なし。"
    stage(doc(note + NOTICE))
    later = note + "夕食は全量摂取し、内服薬も自己管理で確実に服用できている。"
    assert stage(doc(later)).text == later
    twice = "創部に発赤・腫脹・熱感はなく、滲出液も認めない状態が続いている。" * 2
    assert stage(doc(twice)).text == twice


def test_sentence_dedup_removes_a_document_with_nothing_new():
    stage = SentenceDedup(min_chars=20, capacity=1000, error_rate=1e-6)
    stage(doc(CASE))
    # Every long sentence is a repeat; only a short heading would be left.
    assert stage(doc("【症例】\n" + CASE)) is None
    assert stage.stats["sentences"] == 2 * len([s for s in split_sentences(CASE) if len(s) >= 20])


def test_near_dedup_removes_a_lightly_edited_copy():
    stage = NearDedup(ngram=5, num_perm=128, bands=16, capacity=1000, error_rate=1e-6)
    assert stage(doc(CASE)) is not None
    edited = CASE.replace("68歳男性", "67歳男性").replace("第10病日", "第12病日").replace("良好で", "順調で")
    assert stage(doc("【症例報告】\n" + edited)) is None
    assert stage(doc(OTHER)) is not None
    assert stage(doc("")) is not None


def test_near_dedup_signature_is_deterministic():
    a = NearDedup(ngram=5, num_perm=64, bands=8, capacity=100, error_rate=1e-3)
    b = NearDedup(ngram=5, num_perm=64, bands=8, capacity=100, error_rate=1e-3)
    assert np.array_equal(a.signature(CASE), b.signature(CASE))
    other_seed = NearDedup(ngram=5, num_perm=64, bands=8, capacity=100, error_rate=1e-3, seed=1)
    assert not np.array_equal(a.signature(CASE), other_seed.signature(CASE))
    # The fraction of equal values estimates the Jaccard similarity: unrelated texts share few.
    assert (a.signature(CASE) == a.signature(OTHER)).mean() < 0.1
    assert a.signature(CASE.replace(" ", "")).tolist() == a.signature(CASE).tolist()


# ---------------------------------------------------------------- config


def test_build_dedup_order_and_switches():
    small = dict(capacity=1000, sentence_capacity=1000)
    assert [s.name for s in build_dedup(DedupConfig(**small))] == ["exact_dedup", "sentence_dedup"]
    config = DedupConfig(**small, near_duplicates=True, exact_documents=False, num_perm=32, bands=4)
    assert [s.name for s in build_dedup(config)] == ["near_dedup", "sentence_dedup"]
    assert build_dedup(DedupConfig(**small, exact_documents=False, repeated_sentences=False)) == []


@pytest.mark.parametrize("fields, message", [
    (dict(num_perm=128, bands=10), "bands=10 must divide num_perm=128"),
    (dict(error_rate=0.0), "DedupConfig.error_rate"),
    (dict(capacity=0), "DedupConfig.capacity must be positive"),
    (dict(min_sentence_chars=0), "DedupConfig.min_sentence_chars"),
    (dict(near_duplicates="yes"), "DedupConfig.near_duplicates must be true or false"),
])
def test_dedup_config_errors_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        DedupConfig(**fields)
