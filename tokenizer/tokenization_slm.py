"""`SLMTokenizer`: JapaneseTokenizer as a transformers tokenizer, for exported folders (tokenizer.hf_export).

    AutoTokenizer.from_pretrained(folder, trust_remote_code=True)

The contract, checked by tests/test_tokenizer_transformers.py:
- `encode(text, add_special_tokens=False)` is JapaneseTokenizer's `encode(text)`, and with
  add_special_tokens (transformers' default) the ids start with <begin_of_text>, as every
  training document does (`encode(text, add_bos=True)`);
- `decode(ids, skip_special_tokens=...)` is JapaneseTokenizer's `decode`: the newline token is
  always "\\n", other special tokens are written unless skipped;
- text is text: "<|user|>" or "<end_of_text>" in a string encodes as characters
  (split_special_tokens=True by default);
- `apply_chat_template(..., tokenize=True)` gives slm.chat.encode_chat's ids: the template's own
  special tokens become their ids, each message is normalised and encoded on its own, and the same
  strings inside a message stay characters, so a message cannot forge a turn.

The pipeline is JapaneseTokenizer's: normalise (clean.py), split into lines with the newline token
between them, MeCab morphemes (morph.py) with the same user dictionary, SentencePiece pieces per
morpheme with byte fallback. The newline token is a SentencePiece control piece, not a transformers
added token, so transformers never splits text at newlines before it is normalised. This file
imports only the standard library, sentencepiece, transformers and its two neighbours, which an
exported folder holds as copies of the library's own tokenizer/clean.py and tokenizer/morph.py.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings

import sentencepiece as spm
from transformers import PreTrainedTokenizer

from .clean import CleanConfig, normalize
from .morph import Morphology
from .morph import unidic_version as installed_unidic_version

BOS, EOS, NEWLINE = "<begin_of_text>", "<end_of_text>", "\n"
MODEL_FILE, USER_DICT_FILE = "tokenizer.model", "user.dic"
CHAT_KWARG = "slm_escaped_chat"  # tells `tokenize` that the text is a chat rendered from escaped messages
_MARK = "\ue000"  # a private-use character that breaks special-token strings inside messages
_UNESCAPE = re.compile(f"{_MARK}({_MARK}?)")


class SLMTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": MODEL_FILE, "user_dict_file": USER_DICT_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, settings: dict, user_dict_file: str | None = None,
                 bos_token: str = BOS, eos_token: str = EOS, pad_token: str = EOS, split_special_tokens: bool = True,
                 **kwargs):
        """vocab_file, user_dict_file: the SentencePiece model and the compiled MeCab dictionary (None:
        plain unidic); settings: JapaneseTokenizer's own (its tokenizer.json: the cleaning, the special
        tokens with those added after the vocabulary, the unidic version, how it was trained), kept
        whole in tokenizer_config.json so that slm reads the folder back as the tokenizer it was."""
        trained_with = settings["unidic_version"]
        if trained_with != installed_unidic_version():
            warnings.warn(f"trained with unidic-lite {trained_with}, this environment has "
                          f"{installed_unidic_version()}; morphemes may differ", stacklevel=2)
        self.vocab_file, self.user_dict_file, self.settings = vocab_file, user_dict_file, settings
        self.special_token_ids: dict[str, int] = settings["special_tokens"]
        self._clean = CleanConfig.from_dict(settings["clean"])
        self._sp = spm.SentencePieceProcessor(model_file=str(vocab_file))
        self._morph = Morphology(user_dict_file)
        # The chat tokens (and any other special token but the newline) are transformers' extra special tokens.
        kwargs.setdefault("extra_special_tokens", [t for t in self.special_token_ids if t not in (BOS, EOS, NEWLINE)])
        super().__init__(bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                         split_special_tokens=split_special_tokens, special_tokens_pattern="bos", settings=settings,
                         **kwargs)

    # ------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """JapaneseTokenizer's: the pieces and the special tokens added after them (the model's rows)."""
        return len(self._vocab())

    def _vocab(self) -> dict[str, int]:
        pieces = {self._sp.id_to_piece(i): i for i in range(self._sp.get_piece_size())}
        return {**pieces, **self.special_token_ids}

    def get_vocab(self) -> dict[str, int]:
        return {**self._vocab(), **self.added_tokens_encoder}

    def _convert_token_to_id(self, token: str) -> int:
        return self._sp.piece_to_id(token)  # <unk>'s id for a string that is no piece

    def _convert_id_to_token(self, index: int) -> str:
        return self._sp.id_to_piece(index)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Copy the SentencePiece model and the user dictionary (when there is one)."""
        saved = []
        for key, source in (("vocab_file", self.vocab_file), ("user_dict_file", self.user_dict_file)):
            if source is None:
                continue
            target = os.path.join(save_directory, (f"{filename_prefix}-" if filename_prefix else "")
                                  + self.vocab_files_names[key])
            if os.path.abspath(source) != os.path.abspath(target):
                shutil.copyfile(source, target)
            saved.append(target)
        return tuple(saved)

    # ------------------------------------------------------------ encode / decode

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        """JapaneseTokenizer.encode's pieces: normalise, lines, morphemes, pieces per morpheme."""
        pieces = []
        for n, line in enumerate(normalize(text, self._clean).split("\n")):
            if n:
                pieces.append(NEWLINE)
            if line:
                for morpheme in self._morph.morphemes(line):
                    pieces += self._sp.encode(morpheme, out_type=str)
        return pieces

    def tokenize(self, text: str, **kwargs) -> list[str]:
        """transformers' tokenize; for a chat rendered by `apply_chat_template`, the special tokens
        the template wrote are tokens and the text between them, each message, is unescaped and encoded."""
        if not kwargs.pop(CHAT_KWARG, False):
            return super().tokenize(text, **kwargs)
        tokens = []
        for part in self.tokens_trie.split(text):
            tokens += [part] if part in self._added_tokens_encoder else self._tokenize(_UNESCAPE.sub(r"\1", part))
        return tokens

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Pieces decoded by SentencePiece (▁ as spaces, bytes reassembled), special tokens and the
        newline written as they are."""
        out, run = [], []
        for token in tokens:
            if token in self.special_token_ids or token in self._added_tokens_encoder:
                out += [self._sp.decode_pieces(run), token] if run else [token]
                run = []
            else:
                run.append(token)
        if run:
            out.append(self._sp.decode_pieces(run))
        return "".join(out)

    # ------------------------------------------------------------ chat

    def apply_chat_template(self, conversation, *args, tokenize: bool = True, tokenizer_kwargs: dict | None = None,
                            **kwargs):
        """transformers' apply_chat_template, with slm.chat's rule when tokenizing: the template's special
        tokens are tokens, the same strings inside messages are text (transformers'
        sanitize_control_tokens, always on, and exact: each message is still encoded whole).

        Each special-token string in a message's content is broken by a private-use mark before
        rendering (marks already there are doubled), and `tokenize` removes the marks again from the
        text between the template's tokens. The rendered string of tokenize=False is the plain chat;
        tokenize it with split_special_tokens=False to read its role tokens (messages unprotected).
        """
        if tokenize:
            kwargs.pop("sanitize_control_tokens", None)  # always so here, by the escaping
            conversation = _escape_chat(conversation, tuple(self._added_tokens_encoder))
            tokenizer_kwargs = {**(tokenizer_kwargs or {}), CHAT_KWARG: True}
        return super().apply_chat_template(conversation, *args, tokenize=tokenize, tokenizer_kwargs=tokenizer_kwargs,
                                           **kwargs)


def _escape(text: str, tokens: tuple[str, ...]) -> str:
    """`text` with every mark doubled and a mark after the first character of every token in it, so
    none is found in it; `_UNESCAPE` undoes exactly this (a lone mark goes, a pair becomes one)."""
    text = text.replace(_MARK, _MARK * 2)
    for token in tokens:
        text = text.replace(token, token[0] + _MARK + token[1:])
    return text


def _escape_chat(conversation, tokens: tuple[str, ...]):
    """The messages (or a batch of conversations) with their string contents escaped."""
    if conversation and isinstance(conversation[0], (list, tuple)):
        return [_escape_chat(c, tokens) for c in conversation]
    return [{**m, "content": _escape(m["content"], tokens)} if isinstance(m, dict) and isinstance(m.get("content"), str)
            else m for m in conversation]
