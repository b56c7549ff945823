"""Instruction data in the two plain JSONL styles, as chat conversations.

- `{"messages": [{"role": ..., "content": ...}, ...]}`
- `{"instruction": ..., "input": ..., "output": ..., "system"?: ...}` (Alpaca style; input may be empty)

Malformed records (bad JSON, a missing field, an unusable conversation) are
counted with file and line and skipped, or stop the run in strict mode.
"""

from __future__ import annotations

from slm.data.readers import ReadErrors
from slm.chat import ChatFormatError, check_messages
from tokenizer.corpus import CorpusError, list_files, read_jsonl_records


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


def load_conversations(paths: list[str], errors: ReadErrors) -> list[list[dict]]:
    """Every usable conversation of the JSONL files (or folders of them), in file order."""
    conversations = []
    for path in list_files(paths):
        for line, record in read_jsonl_records(path, None, on_error=errors):
            try:
                conversations.append(to_messages(record))
            except ChatFormatError as e:
                errors(CorpusError(f"{path} line {line}: {e}", path))
    return conversations
