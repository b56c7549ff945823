"""Instruction data that cannot be read fails by name: the file, the line and byte, the fix, through
`load_conversations` and through finetune.py's command line (one line on stderr, exit status 2)."""

import json
import re

import pytest

from slm.data.readers import ReadErrors
from slm.finetune.instructions import load_conversations
from tokenizer.corpus import CorpusError

RECORD = {"instruction": "発熱の原因は何ですか。", "output": "感染症が多いです。"}
LINE = json.dumps(RECORD, ensure_ascii=False)


def bad_inputs(tmp_path):
    """name -> (file, what its error must say)."""
    files = {"sjis": tmp_path / "sjis.jsonl", "binary": tmp_path / "data.jsonl.gz", "empty": tmp_path / "empty.jsonl",
             "malformed": tmp_path / "malformed.jsonl"}
    files["sjis"].write_bytes(('{"instruction": "ok", "output": "ok"}\n' + LINE + "\n").encode("cp932"))
    files["binary"].write_bytes(b"\x1f\x8b\x08\x00\x00\x00" + bytes(range(256)) * 4)
    files["empty"].write_bytes(b"")
    files["malformed"].write_text('{"broken": \n[1, 2]\n{"messages": [{"role": "user", "content": "答えなし"}]}\n'
                                  '{"instruction": "q"}\n', encoding="utf-8")
    expected = {
        # the file, the line and byte where decoding failed, the encoding, what it looks like, the fix
        "sjis": [r"sjis\.jsonl line 2: not valid utf-8 \(byte 0x94 at column 18, offset 55 in the file\)",
                 r"Shift_JIS \(cp932\)", r"re-save it as UTF-8", r"iconv -f cp932 -t utf-8"],
        "binary": [r"data\.jsonl\.gz: looks binary \(NUL byte at offset 3\)", "decompress"],
        "empty": [r"no usable conversation in \S*empty\.jsonl: 1 skipped", r"empty\.jsonl: file is empty"],
        "malformed": [r"no usable conversation in \S*malformed\.jsonl: 4 skipped",
                      r"malformed\.jsonl line 1: not valid JSON", r"line 2: not a JSON object",
                      r"line 3: the conversation must end with an assistant message"],
    }
    return files, expected


@pytest.mark.parametrize("case", ["sjis", "binary", "empty", "malformed"])
def test_unreadable_instruction_files_are_errors_naming_the_file(tmp_path, case):
    files, expected = bad_inputs(tmp_path)
    with pytest.raises(CorpusError) as info:
        load_conversations([str(files[case])], ReadErrors())
    message = str(info.value)
    assert "\n" not in message
    for pattern in expected[case]:
        assert re.search(pattern, message), (pattern, message)


def test_malformed_records_beside_good_ones_are_still_counted_and_skipped(tmp_path):
    files, _ = bad_inputs(tmp_path)
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\xef\xbb\xbf" + (LINE + "\n").encode("utf-8"))  # a byte-order mark, as Notepad writes it
    errors = ReadErrors()
    conversations = load_conversations([str(good), str(files["malformed"]), str(files["empty"])], errors)
    assert [c[-1]["content"] for c in conversations] == [RECORD["output"]]
    assert errors.total == 5 and errors.counts[str(files["malformed"])] == 4
    with pytest.raises(CorpusError, match=r"malformed\.jsonl line 1: not valid JSON"):  # strict: the first one stops
        load_conversations([str(good), str(files["malformed"])], ReadErrors(strict=True))
    # a file in another encoding is never a pile of skipped records, even beside good files
    with pytest.raises(CorpusError, match=r"sjis\.jsonl line 2: not valid utf-8"):
        load_conversations([str(good), str(files["sjis"])], ReadErrors())


@pytest.mark.parametrize("case", ["sjis", "binary", "empty", "malformed"])
def test_finetune_cli_ends_in_one_line_naming_the_file(tmp_path, slm_dir, capsys, case):
    from finetune import main

    files, expected = bad_inputs(tmp_path)
    config = tmp_path / "sft.yaml"
    config.write_text(json.dumps({"out": str(tmp_path / "sft"), "init_from": str(slm_dir),
                                  "train_files": [str(files[case])], "seq_len": 32, "micro_batch": 2,
                                  "global_batch": 2, "steps": 2, "tensorboard": False}), encoding="utf-8")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert str(files[case]) in lines[0] and re.search(expected[case][0], lines[0])
