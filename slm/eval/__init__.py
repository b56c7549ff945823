"""Evaluation (report §2.5): IgakuQA and JMED-LLM, scored by their official rules."""
