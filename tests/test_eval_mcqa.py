"""English medical multiple choice: the published schemas, answer extraction from chains of thought,
few-shot selection (fixed and kNN), self-consistency voting, and the interval."""

import json

import numpy as np
import pytest

from conftest import ScriptedLM
from slm.config import ConfigError
from slm.eval.harness import Context
from slm.eval.mcqa import Options, conversation, evaluate, extract_choice, knn_shots, load, wilson

QUIET = Context(progress=False)
from slm.lm import Completion, plain_text

LABELS = list("ABCD")


def test_answer_extraction_from_realistic_chains_of_thought():
    mid = ("The patient has a classic presentation of pneumonia. The answer is (B). Option A is wrong because "
           "aspirin is not indicated, and D would be for viral causes.")
    assert extract_choice(mid, LABELS) == "B"  # stated mid-text, other letters discussed after it
    assert extract_choice("Considering A and C... Answer: C", LABELS) == "C"
    assert extract_choice("A is tempting. However, the correct option is D.", LABELS) == "D"
    assert extract_choice("First the answer is A, but on reflection the answer is C.", LABELS) == "C"  # the last one
    assert extract_choice("(B).", LABELS) == "B" and extract_choice(" C ", LABELS) == "C"
    assert extract_choice("Options A and C both seem plausible.", LABELS) is None  # several letters, no statement
    assert extract_choice("I am not sure.", LABELS) is None and extract_choice("", LABELS) is None
    assert extract_choice("Aspirin is the best choice", LABELS) is None  # the A of a word is no answer
    assert extract_choice("The answer is E.", LABELS) is None  # not an option here
    assert extract_choice("The answer is a beta blocker, so C.", LABELS) == "C"  # "a" is an article, not A
    yn = ["yes", "no", "maybe"]
    assert extract_choice("Yes", yn) == "yes" and extract_choice("so the answer is maybe.", yn) == "maybe"
    assert extract_choice("There is no evidence, but maybe.", yn) is None


def test_wilson_interval():
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0) and wilson(0, 20)[0] == pytest.approx(0.0, abs=1e-12)


@pytest.fixture()
def files(tmp_path):
    medqa = tmp_path / "medqa.jsonl"
    medqa.write_text("\n".join(json.dumps(r) for r in [
        {"question": "First-line drug for type 2 diabetes?", "options": {"A": "Insulin", "B": "Metformin", "C": "Warfarin",
                                                                        "D": "Digoxin"}, "answer_idx": "B"},
        {"question": "Most common cause of community-acquired pneumonia?", "options": ["S. pneumoniae", "P. aeruginosa",
                                                                                       "M. tuberculosis", "E. coli"],
         "answer": "S. pneumoniae"},
        {"question": "Antidote for heparin?", "options": {"A": "Vitamin K", "B": "Protamine", "C": "Naloxone", "D": "Flumazenil"},
         "answer_idx": "B"},
        {"question": "broken", "options": {"A": "x"}, "answer_idx": "A"},
    ]) + "\n")
    medmcqa = tmp_path / "medmcqa.jsonl"
    medmcqa.write_text(json.dumps({"question": "Vitamin deficient in scurvy?", "opa": "A", "opb": "B12", "opc": "C",
                                   "opd": "D", "cop": 3}) + "\n")
    pubmedqa = tmp_path / "ori_pqal.json"
    pubmedqa.write_text(json.dumps({"1": {"QUESTION": "Does aspirin reduce risk?", "CONTEXTS": ["It did."],
                                          "final_decision": "yes"}}))
    mmlu = tmp_path / "anatomy_test.csv"
    mmlu.write_text('"Which bone is in the thigh?",Femur,Tibia,Ulna,Radius,A\n')
    (tmp_path / "astronomy_test.csv").write_text('"Q?",a,b,c,d,A\n')
    return tmp_path


def test_each_published_schema_loads_and_bad_records_are_listed(files):
    medqa, skipped = load("medqa", [files / "medqa.jsonl"])
    assert [q.answer for q in medqa] == ["B", "A", "B"] and medqa[0].labels == LABELS
    assert len(skipped) == 1 and "line 4" in skipped[0]
    assert load("medmcqa", [files / "medmcqa.jsonl"])[0][0].answer == "C"
    pubmed = load("pubmedqa", [files / "ori_pqal.json"])[0]
    assert pubmed[0].labels == ["yes", "no", "maybe"] and pubmed[0].answer == "yes"
    mmlu, skipped = load("mmlu", [files / "anatomy_test.csv", files / "astronomy_test.csv"])
    assert [q.answer for q in mmlu] == ["A"] and "astronomy" in skipped[0]
    with pytest.raises(ValueError, match="benchmark"):
        load("usmle", [])


class Embedder:
    """Bag-of-words vectors: questions sharing words are near."""

    name, chat, max_length = "bow", False, None

    def embed(self, texts, batch_size=8):
        vocab = sorted({w for t in texts for w in t.lower().split()})
        return np.array([[t.lower().split().count(w) for w in vocab] for t in texts], dtype=np.float32)


def test_knn_selects_the_nearest_training_questions(files):
    questions, _ = load("medqa", [files / "medqa.jsonl"])
    test, train = questions[:1], questions[1:] + questions[:1]  # the identical question is in train too
    shots = knn_shots(test, train, 1, Embedder())
    assert len(shots[0]) == 1 and shots[0][0].question != test[0].question  # never the question itself


def test_fixed_few_shot_chain_of_thought_and_unparsed_answers(files):
    questions, _ = load("medqa", [files / "medqa.jsonl"])
    lm = ScriptedLM({"type 2 diabetes": "Metformin lowers glucose. The answer is B.",
                     "pneumonia": "Options A and C are both organisms.", "heparin": "Answer: B"})
    result = evaluate(lm, questions, questions, Options(shots=2, cot=True), QUIET)
    assert result["correct"] == 2 and result["unparsed"] == ["medqa-1"] and result["questions"] == 3
    assert result["ci95"][0] < result["accuracy"] < result["ci95"][1]
    asked = lm.generated[0]
    assert "The answer is X" in asked[0]["content"] and asked[2]["content"].startswith("The answer is")
    assert len(asked) == 1 + 2 * 2 + 1  # system, two examples, the question
    with pytest.raises(ValueError, match="training split"):
        evaluate(lm, questions, options=Options(shots=2))


class Sampler(ScriptedLM):
    """Each sampled chain answers differently: votes B, B, C for the first question."""

    def generate(self, prompts, max_new_tokens=256, temperature=0.0, seed=None, **kwargs):
        chains = {0: "The answer is B.", 1000: "the answer is (B)", 2000: "Answer: C"}
        self.generated += prompts
        return [Completion(chains[seed], False) for _ in prompts]


def test_self_consistency_takes_the_majority_of_sampled_chains(files):
    questions, _ = load("medqa", [files / "medqa.jsonl"])
    result = evaluate(Sampler(), questions[:1], options=Options(cot=True, samples=3, temperature=0.8), context=QUIET)
    row = result["rows"][0]
    assert row["votes"] == ["B", "B", "C"] and row["prediction"] == "B" and row["correct"]
    assert result["settings"]["samples"] == 3 and result["settings"]["temperature"] == 0.8
    with pytest.raises(ConfigError, match="no chain of thought"):
        Options(method="loglik", cot=True)


def test_a_base_model_reads_the_prompt_as_text_and_ranks_labels_after_the_cue(files):
    questions, _ = load("medqa", [files / "medqa.jsonl"])
    lm = ScriptedLM(scores={("type 2 diabetes", " B"): -0.5})
    lm.chat = False
    result = evaluate(lm, questions[:1], questions[1:], Options(shots=1, method="loglik"), QUIET)
    assert result["rows"][0]["prediction"] == "B"  # " B", the letter after "Answer:", was scored
    text = plain_text(conversation(questions[0], questions[1:2], cot=False, plain=True))
    assert "D. E. coli\nAnswer: A\n\nFirst-line drug" in text and text.endswith("D. Digoxin\nAnswer:")


def test_loglik_ranks_the_labels(files):
    questions, _ = load("medqa", [files / "medqa.jsonl"])
    lm = ScriptedLM(scores={("type 2 diabetes", "B"): -0.5, ("pneumonia", "A"): -0.1, ("heparin", "C"): -0.2})
    result = evaluate(lm, questions, options=Options(method="loglik"), context=QUIET)
    assert [r["prediction"] for r in result["rows"]] == ["B", "A", "C"] and result["correct"] == 2


def test_cli_with_a_checkpoint(slm_dir, files, tmp_path, capsys):
    from evaluate import main

    args = ["medqa", "--model", str(slm_dir), "--data", str(files / "medqa.jsonl")]
    assert main(args + ["--method", "loglik", "--out", str(tmp_path / "ll")]) == 0
    assert "| medqa |" in capsys.readouterr().out
    assert main(args + ["--train", str(files / "medqa.jsonl"), "--shots", "1", "--selection", "knn", "--cot",
                        "--max-new-tokens", "8", "--out", str(tmp_path / "cot")]) == 0
    metrics = json.loads((tmp_path / "cot" / "metrics.json").read_text())
    assert metrics["medqa"]["settings"]["selection"] == "knn" and metrics["medqa"]["questions"] == 3
    assert (tmp_path / "cot" / "predictions.jsonl").is_file() and (tmp_path / "cot" / "table.md").is_file()
