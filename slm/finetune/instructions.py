"""Instruction data in the two plain JSONL styles, as chat conversations.

- `{"messages": [{"role": ..., "content": ...}, ...]}`
- `{"instruction": ..., "input": ..., "output": ..., "system"?: ...}` (Alpaca style; input may be empty)

Files are UTF-8 (a byte-order mark is allowed). Malformed records (bad JSON, a
missing field, an unusable conversation) and empty files are counted with file
and line and skipped, or stop the run in strict mode. A file that is not UTF-8
(Shift_JIS, say) or not text at all is no pile of bad records: it stops the run
with a CorpusError naming the file, the line and byte where decoding failed, and
the fix. So does a set of files that gives no usable conversation, with the
first few reasons why.
"""

from __future__ import annotations

from pathlib import Path

from slm.data.readers import ReadErrors
from slm.chat import ChatFormatError, check_messages
from tokenizer.corpus import CorpusError, UndecodableError, list_files, read_jsonl_records, utf8_fix

ENCODING = "utf-8"
BINARY_FIX = "instruction data must be UTF-8 JSONL (a compressed file? decompress it first)"
REASONS_SHOWN = 3  # skip reasons quoted when nothing usable is left


def to_messages(record: dict) -> list[dict]:
    """A record in either style as a message list; ChatFormatError says what is wrong."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list):
            raise ChatFormatError("'messages' must be a list")
    elif isinstance(record.get("instruction"), str) and isinstance(record.get("output"), str):
        user = record["instruction"] + (f"\n{record['input']}" if record.get("input") else "")
        messages = ([{"role": "system", "content": record["system"]}] if record.get("system") else []) + [
            {"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]
    else:
        raise ChatFormatError("needs 'messages', or 'instruction' and 'output' strings")
    check_messages(messages)
    if messages[-1]["role"] != "assistant":
        raise ChatFormatError("the conversation must end with an assistant message (the answer to learn)")
    return messages


def nothing_usable(files: list[Path], what: str, skipped: int, reasons: list[str]) -> CorpusError:
    """The error for inputs that gave nothing to use: the files, how many records were skipped, why."""
    names = ", ".join(map(str, files))
    why = f" (first: {'; '.join(reasons[:REASONS_SHOWN])})" if reasons else ""
    return CorpusError(f"no usable {what} in {names}: {skipped} skipped{why}",
                       files[0] if len(files) == 1 else None)


def load_conversations(paths: list[str], errors: ReadErrors) -> list[list[dict]]:
    """Every usable conversation of the JSONL files (or folders of them), in file order.

    Malformed records go to `errors` (counted, or raised in strict mode); a file that does not
    decode as UTF-8, and inputs without a single usable conversation, raise CorpusError.
    """
    files = list_files(paths)
    conversations: list[list[dict]] = []
    reasons: list[str] = []
    skipped = 0

    def skip(error: CorpusError) -> None:
        nonlocal skipped
        if isinstance(error, UndecodableError):  # the whole file is unreadable, not one record
            raise error
        skipped += 1
        if len(reasons) < REASONS_SHOWN:
            reasons.append(str(error))
        errors(error)

    for path in files:
        for line, record in read_jsonl_records(path, None, ENCODING, skip, utf8_fix, BINARY_FIX):
            try:
                conversations.append(to_messages(record))
            except ChatFormatError as e:
                skip(CorpusError(f"{path} line {line}: {e}", path))
    if not conversations:
        raise nothing_usable(files, "conversation", skipped, reasons)
    return conversations
