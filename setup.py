from setuptools import find_packages, setup

setup(
    name="slm",
    version="0.1.0",
    description="Small language models for Japanese clinical and medical text (NCVC-slm-1 reimplementation)",
    python_requires=">=3.10",
    packages=find_packages(include=["slm", "slm.*", "tokenizer", "tokenizer.*"]),
    package_data={"tokenizer": ["dict/*.csv"], "slm.data": ["topics/*.txt", "wordlists/*.txt"]},
    install_requires=[
        "torch>=2.5",  # SDPA with enable_gqa
        "numpy",
        "safetensors",
        "tqdm",
        "pyyaml",
        "matplotlib",  # loss curves
        "sentencepiece",
        "fugashi",
        "unidic-lite",
    ],
    extras_require={
        "deepspeed": ["deepspeed"],
        "flash": ["flash-attn>=2"],
        "quality": ["scikit-learn"],  # the random-forest quality classifier (report §2.1)
        "eval": ["rouge-score", "sacrebleu"],  # free-text answer metrics (ROUGE-L, BLEU)
        "peft": ["peft"],  # loading an adapter from slm.lora.save_peft_adapter (writing it needs none)
        # notebooks/: Jupyter's kernel and runner, t-SNE, and a font with Japanese glyphs for the plots
        "notebooks": ["ipykernel", "nbclient", "nbformat", "scikit-learn", "matplotlib-fontja"],
        "dev": ["pytest", "transformers>=5", "scikit-learn", "deepspeed", "ipykernel", "nbclient", "nbformat",
                "matplotlib-fontja", "rouge-score", "sacrebleu", "peft"],
    },
)
