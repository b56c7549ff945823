"""A tokenizer folder that transformers loads by itself, giving JapaneseTokenizer's ids exactly.

    save_transformers_tokenizer(tok, folder, chat_template=CHAT_TEMPLATE)
    AutoTokenizer.from_pretrained(folder, trust_remote_code=True)   # needs no slm, no `tokenizer` package

The folder gets the SentencePiece model (tokenizer.model), the compiled MeCab dictionary (user.dic,
when there is one), tokenizer_config.json (the class and its auto_map, the special tokens,
JapaneseTokenizer's settings whole, model_max_length, the chat template)
and three Python files: tokenization_slm.py (SLMTokenizer) with clean.py and morph.py, this
package's own files copied as they are, which it imports relatively. Loading needs transformers,
sentencepiece, fugashi and unidic-lite.

tokenizer.hf's load_tokenizer reads such a folder back as the JapaneseTokenizer it was (for every
reader of a model folder in slm), running no code from the folder.

No file named tokenizer.json is written, and a folder holding one is refused: transformers reads
that name as a fast tokenizer (and JapaneseTokenizer's folders keep their settings under it).
"""

from __future__ import annotations

from pathlib import Path

from tokenizer.japanese import MODEL_FILE, SETTINGS_FILE, USER_DICT_FILE, JapaneseTokenizer


def save_transformers_tokenizer(tok: JapaneseTokenizer, directory: str | Path, *, chat_template: str | None = None,
                                model_max_length: int | None = None) -> None:
    """Write `tok` as a transformers tokenizer into the existing folder `directory` (a model export),
    its chat tokens (reserved or added after the vocabulary) included."""
    from tokenizer.tokenization_slm import SLMTokenizer  # optional dependency: transformers

    directory = Path(directory)
    if (directory / SETTINGS_FILE).exists():
        raise FileExistsError(f"{directory} holds {SETTINGS_FILE}, which transformers would read as a fast "
                              "tokenizer; write the transformers tokenizer into another folder")
    user_dict = tok.directory / USER_DICT_FILE
    hf = SLMTokenizer(vocab_file=str(tok.directory / MODEL_FILE), settings=tok.settings,
                      user_dict_file=str(user_dict) if user_dict.is_file() else None,
                      chat_template=chat_template, model_max_length=model_max_length)
    hf.register_for_auto_class("AutoTokenizer")  # save_pretrained copies the class's files and writes auto_map
    hf.save_pretrained(directory, save_jinja_files=False)  # the chat template inside tokenizer_config.json
