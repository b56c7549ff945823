"""The notebooks: committed without outputs, and each runs top to bottom headless on CPU against
the demo checkpoint (or a tiny run built here), writing its figures as PNG files."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DEMO_RUN = ROOT / "runs" / "pretrain" / "tiny-sample"
FIGURES = {"01_quickstart": ["perplexity_per_document.png"],
           "02_embedding_space": ["embeddings_pca.png", "embeddings_tsne.png"],
           "03_token_analogy": ["analogies.png"],
           "04_attention_maps": ["attention_layer1.png", "attention_layer2.png", "cross_document_attention.png"],
           "05_training_curves": ["training_curves.png", "sweep.png"]}


def test_the_notebooks_are_committed_without_outputs_and_say_what_they_run_on():
    assert [p.stem for p in NOTEBOOKS] == list(FIGURES)
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), f"{path.name} has outputs"
        assert "Runs top to bottom on CPU" in "".join(nb["cells"][0]["source"]), path.name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, request):
    """The demo's pretraining run when `make demo` has written it, else a tiny one trained here."""
    from slm.runs import complete_checkpoints

    if len(complete_checkpoints(DEMO_RUN / "checkpoints")) >= 2:
        return DEMO_RUN
    from slm.train.config import TrainConfig
    from slm.train.trainer import train

    data_dir = request.getfixturevalue("data_dir")
    run = tmp_path_factory.mktemp("notebook-run") / "run"
    train(TrainConfig.from_dict({
        "out": str(run), "data": str(data_dir), "mixture": {"weights": {"clinical": 1.0}}, "model": "tiny",
        "seq_len": 64, "micro_batch": 4, "global_batch": 4, "steps": 20, "tensorboard": False, "log_every": 2,
        "optim": {"warmup_steps": 2}, "checkpoint": {"every": 10},
        "eval": {"every": 10, "batches": 1, "mixture": {"weights": {"heldout": 1.0}}}}))
    return run


def not_blank(png: Path) -> bool:
    from matplotlib.image import imread

    pixels = imread(png)[..., :3]
    return pixels.std() > 0.02 and (pixels.min(axis=-1) < 0.9).mean() > 0.01  # varied, and not almost all white


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIGURES))
def test_notebook_runs_headless_and_writes_its_figures(name, run_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SLM_RUN", str(run_dir))
    monkeypatch.setenv("SLM_FIGURES", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    for figure in FIGURES[name]:
        png = tmp_path / name / figure
        assert png.is_file(), f"{name} did not write {figure}"
        assert not_blank(png), f"{name}: {figure} is blank"
