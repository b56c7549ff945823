"""JMED-LLM's official prompts: one owner for the evaluation (slm.eval.jmed_llm) and the converter
that turns the tasks' training pools into instruction data (slm.finetune.converters), so a model
is trained on exactly the prompts it is evaluated with. The task tables (which task is a choice,
which an extraction, and its metric) are slm.metrics'.
"""

from __future__ import annotations

CHOICE_SYSTEM = ("与えられた医学に関する質問と選択肢から、最も適切な回答を選択してください。"
                 "なお、回答には選択肢のアルファベット（例：A）のみを含め、他には何も含めないことを厳守してください。")
NER_SYSTEM = ("与えられた医学に関する質問から、最も適切な回答をしてください。"
              "なお、回答にはPythonのリスト形式（例：['回答1', '回答2']）のみを含め、他には何も含めないことを厳守してください。")


def option_letters(row: dict) -> str:
    """The row's option letters: empty option cells are not options (RRTNM's T/N/M have 4-6)."""
    return "".join(L for L in "ABCDEF" if (row.get(f"option{L}") or "").strip())


def conversation(row: dict) -> list[dict]:
    """The official system and user turns of a row: a choice question when it has options, else an
    extraction (NER rows: tag, question, answer)."""
    letters = option_letters(row)
    if not letters:
        return [{"role": "system", "content": NER_SYSTEM}, {"role": "user", "content": row["question"]}]
    user = f"質問: {row['question']}\n選択肢:\n" + "".join(f"{L}. {row[f'option{L}']}\n" for L in letters)
    return [{"role": "system", "content": CHOICE_SYSTEM}, {"role": "user", "content": user}]
