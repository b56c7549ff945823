"""Instruction tuning (report §2.4.2): the chat template, loss masks and packing, NEFTune, LoRA."""
