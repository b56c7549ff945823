"""Each cleaning step on real-looking clinical text: what it changes and what it must leave alone."""

from collections import Counter

import pytest

from tokenizer.clean import (CORPUS, NORMALIZE, STEPS, CleanConfig, allowed_chars, clean, dashes, fullwidth_punct,
                             nfkc, normalize, personal_info, repeats, restore_symbols, unify_symbols, web, whitespace)

C = CleanConfig()
MEDICAL = ["HbA1c 7.2%", "5mg/日", "SpO2 95%", "T2N0M0", "α遮断薬とβ遮断薬、γ-GTP", "①発熱 ②咳嗽 ③呼吸困難",
           "体温38.5℃", "血圧132/84mmHg", "WBC 12,300/μL", "Na 138mEq/L", "2024-11-21 入院", "3~5日後",
           "#1 2型糖尿病", "eGFR 45mL/分/1.73m2", "CRP≧10", "Ménière病", "♂ 68歳", "○月×日"]


def test_step_order_and_stages_follow_the_report():
    assert [s.name for s in STEPS] == ["whitespace", "fullwidth_punct", "nfkc", "dashes", "unify_symbols",
                                       "restore_symbols", "personal_info", "web", "allowed_chars", "repeats"]
    assert {s.name for s in STEPS if s.stage == CORPUS} == {"personal_info", "web", "allowed_chars", "repeats"}
    assert {s.name for s in STEPS if s.stage == NORMALIZE} == {"whitespace", "fullwidth_punct", "nfkc", "dashes",
                                                              "restore_symbols", "unify_symbols"}


@pytest.mark.parametrize("text", MEDICAL)
def test_medical_text_survives_everything(text):
    assert clean(text) == text
    assert normalize(text) == text


def test_fullwidth_period_and_comma_become_japanese_punctuation():
    assert fullwidth_punct("既往歴：高血圧，糖尿病．", C) == "既往歴：高血圧、糖尿病。"
    # between digits they are a decimal point and a thousands separator
    assert clean("ＨｂＡ１ｃ ７．２％，血小板 １２，０００") == "HbA1c 7.2%、血小板 12,000"
    assert clean("入院となった．") == "入院となった。"  # not "." as NFKC alone would give


def test_nfkc_unifies_widths_but_keeps_circled_numbers_and_celsius():
    assert nfkc("ＣＲＰ　１．２ｍｇ／ｄＬ　ｶﾘｳﾑ", C) == "CRP 1.2mg/dL カリウム"
    assert nfkc("①②⑳㉑ 37.2℃", C) == "①②⑳㉑ 37.2℃"
    assert nfkc("㎎ µg", C) == "mg μg"  # the micro sign becomes Greek mu
    assert nfkc("①", CleanConfig(nfkc_keep="")) == "1"


def test_dashes_unify_hyphens_long_vowels_and_tildes():
    assert dashes("γ‐GTP、DPP－4阻害薬、ST−T変化", C) == "γ-GTP、DPP-4阻害薬、ST-T変化"
    assert dashes("コンピュ―タ、カテ─テル", C) == "コンピュータ、カテーテル"
    assert dashes("3〜5日、1～2錠", C) == "3~5日、1~2錠"
    assert dashes("ワルファリン-5mg", C) == "ワルファリン-5mg"  # an ASCII hyphen after katakana stays a hyphen
    assert dashes("T2N0M0 2024-11-21", C) == "T2N0M0 2024-11-21"


def test_restore_ellipsis_and_degree_celsius():
    assert restore_symbols("様子を見る...経過観察・・・", C) == "様子を見る…経過観察…"
    assert restore_symbols("体温38.5°C、室温 20° C", C) == "体温38.5℃、室温 20℃"
    assert clean("体温３８．５℃…") == "体温38.5℃…"  # NFKC splits ℃ and … apart; they come back
    assert restore_symbols("右膝屈曲90°、0.5mg", C) == "右膝屈曲90°、0.5mg"  # degrees of angle stay


def test_personal_information_is_removed():
    text = "家族連絡先 03-1234-5678、携帯 090-1234-5678、(03)1234-5678、09012345678、+81-90-1234-5678"
    assert personal_info(text, C) == "家族連絡先 、携帯 、、、"
    assert personal_info("主治医 taro.yamada@hospital.example.jp まで", C) == "主治医  まで"


@pytest.mark.parametrize("text", ["血圧132/84mmHg", "2024-11-21", "0.5-1.0mg/kg", "WBC 12300/μL",
                                  "患者ID 0012345", "Plt 15.2万", "1-2-3の順で"])
def test_personal_information_rule_leaves_numbers_alone(text):
    assert personal_info(text, C) == text


def test_urls_accounts_and_hashtags_are_removed_but_problem_labels_stay():
    text = "詳細は https://example.com/guide?id=3 と www.example.jp/a を参照 @dr_tanaka #糖尿病 #1 高血圧 #2 脂質異常症"
    assert web(text, C) == "詳細は  と  を参照   #1 高血圧 #2 脂質異常症"
    for kept in ["#転倒リスク 82歳男性", "#1 心不全増悪", "[#改ページ]", "C#"]:
        assert web(kept, C) == kept


def test_symbols_of_the_same_meaning_are_unified():
    assert unify_symbols("“疼痛”あり ⇒ 鎮痛薬 • 冷罨法 ≤ 3回", C) == '"疼痛"あり → 鎮痛薬 ・ 冷罨法 ≦ 3回'
    assert unify_symbols("「主訴」『胸痛』【検査】", C) == "「主訴」『胸痛』【検査】"  # Japanese brackets stay


def test_characters_outside_the_allowed_set_are_dropped():
    assert allowed_chars("発熱あり😷🤒 경과 Ménière病 β2刺激薬 ★重要", C) == "発熱あり  Ménière病 β2刺激薬 ★重要"
    assert allowed_chars("😷", CleanConfig(extra_allowed_chars="😷")) == "😷"


def test_repeated_characters_are_collapsed_but_numbers_are_not():
    assert repeats("痛いーーーーー！！！！！wwwwww", C) == "痛いーーー！！！www"
    assert repeats("100000円、10000/μL、ーーー", C) == "100000円、10000/μL、ーーー"
    assert repeats("あああああ", CleanConfig(max_repeat=1)) == "あ"


def test_whitespace_controls_and_the_meta_space():
    assert whitespace("主訴:\t胸痛\r\n現病歴:\x00\u200b 3日前から\u3000", C) == "主訴: 胸痛\n現病歴: 3日前から "
    assert whitespace("a\u2581b", C) == "a b"  # U+2581 is reserved as the meta-space


def test_clean_returns_readable_text_and_counts_changes():
    changes = Counter()
    out = clean("ＳｐＯ２　９５％．連絡先 03-1234-5678", changes=changes)
    assert out == "SpO2 95%。連絡先 "
    assert "▁" not in out
    assert changes == Counter({"whitespace": 1, "fullwidth_punct": 1, "nfkc": 1, "personal_info": 1})


def test_steps_can_be_switched_off_by_name():
    assert clean("連絡先 03-1234-5678", CleanConfig(skip=["personal_info"])) == "連絡先 03-1234-5678"
    with pytest.raises(ValueError, match="unknown step"):
        CleanConfig(skip=["nfc"])


@pytest.mark.parametrize("text", ["続く•••", "続く･･･", "‥…..", "38.5°C•", "ｰ―─", "“…”"])
def test_normalize_is_idempotent_on_symbol_interactions(text):
    assert normalize(normalize(text)) == normalize(text)


def test_normalize_leaves_content_alone_and_is_idempotent():
    text = "ＴＥＬ 03-1234-5678 https://x.jp 😀 すごーーーーい"
    n = normalize(text)
    assert n == "TEL 03-1234-5678 https://x.jp 😀 すごーーーーい"
    assert normalize(n) == n
    assert clean(clean(text)) == clean(text)


def test_config_round_trip():
    c = CleanConfig(skip=["web"], max_repeat=5)
    assert CleanConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown CleanConfig field"):
        CleanConfig.from_dict({"max_repeats": 2})
