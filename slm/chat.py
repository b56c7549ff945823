"""The one chat template, used identically by training, generation and evaluation (report §2.4.2).

    <begin_of_text><|system|>{system}<|user|>{user}<|assistant|>{answer}<end_of_text><|user|>...

`CHAT_TEMPLATE` is this template in Jinja, for a model exported to transformers (slm.export).
Special tokens are inserted by id and text is encoded between them, so a message
that contains the string "<|user|>" cannot forge a turn. The loss covers each
assistant turn from the token right after <|assistant|> through its
<end_of_text> inclusive, and nothing else (labels -100).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slm.model import SLM

SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT)
ROLES = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
IGNORE = -100


class ChatFormatError(ValueError):
    """A conversation that the template cannot express (unknown role, misplaced system turn...)."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # aligned with input_ids (SLM shifts them): the token itself where it is learned, else -100


def check_messages(messages: list[dict]) -> None:
    if not messages:
        raise ChatFormatError("a conversation needs at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ChatFormatError(f"message {i} must be {{'role': system|user|assistant, 'content': str}}, got {m!r}")
        if m["role"] == "system" and i != 0:
            raise ChatFormatError(f"message {i}: a system message can only come first")


def encode_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> Encoded:
    """Token ids and loss labels of a conversation.

    add_generation_prompt ends the ids with <|assistant|>, for the model to answer (generation and
    evaluation); the conversation must then end with a user turn.
    """
    check_messages(messages)
    ids, labels = ([tokenizer.bos_id], [IGNORE]) if tokenizer.bos_id is not None else ([], [])  # Qwen2 has no bos
    for m in messages:
        role_id = tokenizer.token_id(ROLES[m["role"]])
        text = tokenizer.encode(m["content"])
        ids.append(role_id)
        labels.append(IGNORE)
        if m["role"] == "assistant":
            ids += [*text, tokenizer.eos_id]
            labels += [*text, tokenizer.eos_id]
        else:
            ids += text
            labels += [IGNORE] * len(text)
    if add_generation_prompt:
        if messages[-1]["role"] == "assistant":
            raise ChatFormatError("add_generation_prompt needs the conversation to end with a user message")
        ids.append(tokenizer.token_id(ASSISTANT))
        labels.append(IGNORE)
    return Encoded(ids, labels)


# The same template in Jinja, for transformers (an export's tokenizer_config.json, tokenizer.hf_export):
# `apply_chat_template(messages, tokenize=True, add_generation_prompt=...)` on the exported tokenizer gives
# `encode_chat(...).input_ids` (tests/test_tokenizer_transformers.py); rendered, it is `render`'s text.
# The tokenizer turns the role tokens it writes into their ids and keeps the same strings inside
# messages as text, as encode_chat does. Conversations encode_chat refuses, it refuses too.
CHAT_TEMPLATE = (
    "{% set roles = {'system': '<|system|>', 'user': '<|user|>', 'assistant': '<|assistant|>'} %}"
    "<begin_of_text>"
    "{% for message in messages %}"
    "{% if message['role'] not in roles %}"
    "{{ raise_exception('a message role is system, user or assistant, got ' + message['role']) }}"
    "{% elif message['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('a system message can only come first') }}"
    "{% endif %}"
    "{{ roles[message['role']] + message['content'] }}"
    "{% if message['role'] == 'assistant' %}<end_of_text>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{% if messages[-1]['role'] == 'assistant' %}"
    "{{ raise_exception('add_generation_prompt needs the conversation to end with a user message') }}"
    "{% endif %}"
    "<|assistant|>"
    "{% endif %}"
)


def render(messages: list[dict]) -> str:
    """The template as text (for reading and for logs; encoding never goes through this string)."""
    check_messages(messages)
    out = "<begin_of_text>"
    for m in messages:
        out += ROLES[m["role"]] + m["content"] + ("<end_of_text>" if m["role"] == "assistant" else "")
    return out


def ensure_chat_tokens(tokenizer, model: SLM | None = None) -> list[str]:
    """Give the tokenizer the chat tokens (reserved ones are used as they are) and grow the model's
    embedding and LM head to match; returns the tokens that were added."""
    added = tokenizer.add_special_tokens(CHAT_TOKENS)
    if model is not None and tokenizer.vocab_size != model.config.vocab_size:
        resize_token_embeddings(model, tokenizer.vocab_size)
    return added


@torch.no_grad()
def resize_token_embeddings(model: SLM, vocab_size: int) -> None:
    """Grow the embedding (and an untied LM head) to `vocab_size` rows; new rows are the mean of the
    old ones, a start that neither dominates nor vanishes (the usual choice for added tokens)."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ValueError(f"cannot shrink the vocabulary from {old} to {vocab_size}")
    if vocab_size == old:
        return

    def grown(weight: torch.Tensor) -> torch.nn.Parameter:
        extra = weight.mean(dim=0, keepdim=True).expand(vocab_size - old, -1)
        return torch.nn.Parameter(torch.cat([weight, extra]), requires_grad=weight.requires_grad)

    model.embed.weight = grown(model.embed.weight)
    model.embed.num_embeddings = vocab_size
    if model.config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    else:
        model.lm_head.weight = grown(model.lm_head.weight)
    model.lm_head.out_features = vocab_size
    model.config = model.config.replace(vocab_size=vocab_size)
