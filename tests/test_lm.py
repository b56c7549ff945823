import json

import numpy as np
import pytest
import torch

from slm.lm import HFAdapter, SLMAdapter, load_lm
from slm.model import SLM

TEXTS = ["糖尿病", "胸部X線で右下肺野に浸潤影を認め、市中肺炎と診断した。", ""]


@pytest.fixture(scope="module")
def slm_lm(slm_dir):
    return load_lm(slm_dir)


@pytest.fixture(scope="module")
def hf_lm(hf_dir):
    return load_lm(hf_dir)


def test_load_lm_picks_the_adapter_by_config(slm_lm, hf_lm, tmp_path):
    assert isinstance(slm_lm, SLMAdapter) and isinstance(hf_lm, HFAdapter)
    with pytest.raises(ValueError, match="config.json is missing"):
        load_lm(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden": 3}))
    with pytest.raises(ValueError, match="neither"):
        load_lm(tmp_path)


@pytest.mark.parametrize("lm_name", ["slm_lm", "hf_lm"])
def test_embedding_of_a_text_is_the_same_alone_and_left_padded_in_a_batch(lm_name, request):
    lm = request.getfixturevalue(lm_name)
    texts = TEXTS if lm_name == "slm_lm" else TEXTS[:2]  # our texts start with <begin_of_text>, so "" has a token
    batch = lm.embed(texts, batch_size=len(texts))
    assert batch.shape == (len(texts), lm.dim) and batch.dtype == np.float32
    for text, row in zip(texts, batch):
        np.testing.assert_allclose(lm.embed([text])[0], row, atol=1e-5)
    np.testing.assert_allclose(lm.embed(texts, batch_size=2), batch, atol=1e-5)
    assert lm.embed([]).shape == (0, lm.dim)


def test_hf_refuses_a_text_without_tokens_rather_than_embedding_padding(hf_lm):
    with pytest.raises(ValueError, match="1 text.* no tokens"):
        hf_lm.embed(TEXTS, batch_size=3)


def test_slm_embedding_is_what_the_lm_head_reads_at_the_last_token(slm_lm):
    ids = torch.tensor([slm_lm.tokenizer.encode(TEXTS[1], add_bos=True)])
    with torch.no_grad():
        logits = slm_lm.model(ids).logits[0, -1]
        from_embedding = slm_lm.model.lm_head(torch.from_numpy(slm_lm.embed([TEXTS[1]])))[0]
    torch.testing.assert_close(from_embedding, logits, atol=1e-4, rtol=1e-4)
    assert not slm_lm.model.norm._forward_hooks  # the hook is removed after use


def test_hf_embedding_is_the_final_hidden_state_at_the_last_token(hf_lm):
    enc = hf_lm.tokenizer([TEXTS[1]], return_tensors="pt")
    with torch.no_grad():
        expected = hf_lm.model.model(**enc).last_hidden_state[0, -1]
    np.testing.assert_allclose(hf_lm.embed([TEXTS[1]])[0], expected.numpy(), atol=1e-5)
    assert hf_lm.tokenizer.pad_token == "<eos>"  # the tokenizer had none: eos pads


def test_slm_embeds_texts_longer_than_the_context_by_their_start(slm_dir, slm_lm):
    long_text = "患者は発熱と咳嗽を主訴に来院した。" * 60
    assert len(slm_lm.tokenizer.encode(long_text)) > slm_lm.model.config.max_seq_len
    assert slm_lm.embed([long_text]).shape == (1, slm_lm.dim)
    short = SLMAdapter.from_folder(slm_dir, max_length=8)
    start = slm_lm.tokenizer.decode(slm_lm.tokenizer.encode(long_text, add_bos=True)[1:8])
    np.testing.assert_allclose(short.embed([long_text]), slm_lm.embed([start]), atol=1e-5)


def test_slm_generate_returns_the_decoded_continuation_only(slm_lm):
    prompts = ["糖尿病の既往歴があり、", "胸部X線で"]
    texts = [c.text for c in slm_lm.generate(prompts, max_new_tokens=6)]
    for prompt, text in zip(prompts, texts):
        ids = slm_lm.tokenizer.encode(prompt, add_bos=True)
        out = slm_lm.model.generate([ids], max_new_tokens=6)
        assert text == slm_lm.tokenizer.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True)
        assert [c.text for c in slm_lm.generate([prompt], max_new_tokens=6)] == [text]  # the same alone as left-padded


@pytest.mark.parametrize("lm_name", ["slm_lm", "hf_lm"])
def test_sampling_is_reproducible_by_seed_and_leaves_the_global_rng_alone(lm_name, request):
    lm = request.getfixturevalue(lm_name)
    prompts = ["発熱", "咳嗽と喀痰", "腹痛"]
    state = torch.get_rng_state()
    first = lm.generate(prompts, max_new_tokens=8, temperature=1.0, top_p=0.95, seed=3, batch_size=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert lm.generate(prompts, max_new_tokens=8, temperature=1.0, top_p=0.95, seed=3, batch_size=2) == first
    assert len(first) == 3 and all(isinstance(c.text, str) for c in first)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(prompts, temperature=-1.0)


def test_hf_generate_continues_each_prompt_greedily(hf_lm):
    prompts = ["発熱", "咳嗽と喀痰"]
    texts = [c.text for c in hf_lm.generate(prompts, max_new_tokens=5)]
    enc = hf_lm.tokenizer([prompts[1]], return_tensors="pt")
    out = hf_lm.model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=hf_lm.tokenizer.pad_token_id)
    assert texts[1] == hf_lm.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_hf_wraps_prompts_in_the_chat_template_when_there_is_one(hf_dir, monkeypatch):
    lm = HFAdapter(hf_dir)
    assert not lm.chat
    lm.tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}[assistant]"
    lm.chat = True
    seen = []
    generate = lm.model.generate
    monkeypatch.setattr(lm.model, "generate", lambda input_ids, **kw: seen.append(input_ids) or generate(input_ids, **kw))
    lm.generate(["発熱"], max_new_tokens=2)
    assert lm.tokenizer.decode(seen[0][0]) == "[user]発熱[assistant]"
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert lm.tokenizer.decode(lm.encode_prompt(conversation)) == "[system]S[user]Q[assistant]"


CONVERSATION = [{"role": "system", "content": "医師国家試験を解きます。"}, {"role": "user", "content": "問題: 1+1\n答え:"},
                {"role": "assistant", "content": "2"}, {"role": "user", "content": "問題: 2+2\n答え:"}]


def test_plain_text_reads_a_few_shot_conversation_as_a_base_model_would():
    from slm.lm import plain_text

    assert plain_text(CONVERSATION) == "医師国家試験を解きます。\n\n問題: 1+1\n答え:2\n\n問題: 2+2\n答え:"
    assert plain_text([{"role": "user", "content": "Q"}]) == "Q"


def test_slm_prompts_are_plain_for_a_base_model_and_the_chat_template_for_an_instruct_one(slm_dir, tok):
    from slm.chat import encode_chat, ensure_chat_tokens
    from slm.lm import plain_text

    base = SLMAdapter.from_folder(slm_dir)
    assert not base.chat and base.encode_prompt(CONVERSATION) == tok.encode(plain_text(CONVERSATION), add_bos=True)
    chat = SLMAdapter.from_folder(slm_dir, chat=True)
    ensure_chat_tokens(chat.tokenizer)  # the session tokenizer reserves them already
    assert chat.encode_prompt(CONVERSATION) == encode_chat(chat.tokenizer, CONVERSATION, add_generation_prompt=True).input_ids
    assert chat.encode_prompt("Q") == encode_chat(chat.tokenizer, [{"role": "user", "content": "Q"}], True).input_ids


@pytest.mark.parametrize("lm_name", ["slm_lm", "hf_lm"])
def test_loglik_is_the_log_probability_of_the_continuation_tokens(lm_name, request):
    lm = request.getfixturevalue(lm_name)
    requests = [("胸部X線で", "浸潤影"), ("胸部X線で", "a"), ("胸部X線で", "b"), ("発熱", "あり"), ("咳嗽と喀痰の", "c")]
    batched = lm.loglik(requests, batch_size=4)
    for (prompt, continuation), value in zip(requests, batched):
        context, target = lm.encode_prompt(prompt), lm.encode_continuation(continuation)
        ids = torch.tensor([context + target])
        with torch.no_grad():
            logits = lm.model(ids).logits[0].float().log_softmax(-1)
        expected = sum(logits[len(context) - 1 + i, t].item() for i, t in enumerate(target))
        assert value == pytest.approx(expected, abs=1e-4)
        assert lm.loglik([(prompt, continuation)])[0] == pytest.approx(value, abs=1e-4)  # alone = left-padded in a batch
    with pytest.raises(ValueError, match="no tokens"):
        lm.loglik([("発熱", "")])


def test_loglik_scores_one_token_choices_of_a_prompt_in_one_pass(slm_lm, monkeypatch):
    calls = []
    forward = slm_lm._logits
    monkeypatch.setattr(slm_lm, "_logits", lambda ids, mask, keep: calls.append(ids.shape) or forward(ids, mask, keep))
    letters = [c for c in "abcde" if len(slm_lm.encode_continuation(c)) == 1]
    assert len(letters) >= 3
    slm_lm.loglik([("問題: 答え:", c) for c in letters])
    assert calls == [torch.Size([1, len(slm_lm.encode_prompt("問題: 答え:"))])]


@pytest.mark.parametrize("lm_name", ["slm_lm", "hf_lm"])
def test_document_nll_in_windows_scores_every_token_once(lm_name, request):
    lm = request.getfixturevalue(lm_name)
    text = "糖尿病の既往歴があり、内服加療中。" * 3
    ids = lm.encode_document(text)
    nll, n = lm.document_nll(text)
    full = torch.tensor([ids])
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(lm.model(full).logits[0, :-1].float(), full[0, 1:], reduction="sum")
    assert n == len(ids) - 1 and nll == pytest.approx(expected.item(), rel=1e-4)
    width, lm.max_length = lm.max_length, 16
    try:
        assert lm.document_nll(text)[1] == n  # windows overlap by one token: the same tokens predicted
    finally:
        lm.max_length = width


def test_model_paths_resolve_runs_pointers_and_lora_adapters(slm_dir, tok, tmp_path):
    from slm.lora import LoRAConfig, apply_lora, save_adapter
    from slm.runs import resolve_model_dir

    checkpoints = tmp_path / "run" / "checkpoints"
    for step in ("step-0000100", "step-0000200"):
        (checkpoints / step / "trainer_state").mkdir(parents=True)
        (checkpoints / step / "trainer_state" / "trainer.json").write_text("{}")
        (checkpoints / step / "model.safetensors").write_bytes(b"")
    (checkpoints / "latest").write_text("step-0000200\n")
    assert resolve_model_dir(tmp_path / "run") == checkpoints / "step-0000200"
    (checkpoints / "best").write_text(json.dumps({"checkpoint": "step-0000100", "exact": 0.5}))
    assert resolve_model_dir(tmp_path / "run") == checkpoints / "step-0000100"  # instruction tuning's pick
    assert resolve_model_dir(checkpoints / "latest") == checkpoints / "step-0000200"
    assert resolve_model_dir(tmp_path / "run" / "best") == checkpoints / "step-0000100"  # the short form
    with pytest.raises(FileNotFoundError):
        resolve_model_dir(tmp_path / "missing")

    # a LoRA checkpoint: the adapter alone, its base named by the run's config
    model = SLM.from_pretrained(slm_dir)
    apply_lora(model, LoRAConfig(rank=2, dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    adapter = checkpoints / "step-0000100"
    save_adapter(model, adapter)
    tok.save(adapter / "tokenizer")
    (tmp_path / "run" / "config.yaml").write_text(f"init_from: {slm_dir}\n")
    lm = load_lm(tmp_path / "run")
    ids = torch.tensor([tok.encode("発熱と咳嗽", add_bos=True)])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids).logits, model.eval()(ids).logits, atol=1e-4, rtol=1e-4)
    (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(FileNotFoundError, match="names no base"):
        load_lm(adapter)
    assert load_lm(adapter, base=slm_dir).name == "step-0000100"


@pytest.mark.parametrize("lm_name", ["slm_lm", "hf_lm"])
def test_finished_says_which_answers_stopped_on_their_own(lm_name, request, monkeypatch):
    """Row 0 stops (an end token, then padding); row 1 runs into the token limit."""
    lm = request.getfixturevalue(lm_name)
    eos = lm.tokenizer.eos_id if lm_name == "slm_lm" else lm.tokenizer.eos_token_id
    word = lm.encode_continuation("a")[0]

    def fake_generate(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        prompt = ids if isinstance(ids, torch.Tensor) else left_pad_ids(ids)
        new = torch.tensor([[word, eos, lm.pad_id, lm.pad_id], [word, word, word, word]])
        return torch.cat([prompt, new], dim=1)

    def left_pad_ids(ids):
        width = max(map(len, ids))
        return torch.tensor([[lm.pad_id] * (width - len(r)) + r for r in ids])

    monkeypatch.setattr(lm.model, "generate", fake_generate)
    completions = lm.generate(["発熱", "咳嗽"], max_new_tokens=4)
    assert [c.finished for c in completions] == [True, False]
