"""Looking inside a trained model, as the report inspects its base model (§3.4, Appendix A.2,
A.3, A.6): the token-embedding space, token analogies, and attention maps over packed rows.

    from slm.analysis import nearest_tokens, analogy, plot_embeddings, attention_weights
    analogy(model, tok, "脳出血", "脳", "消化管")        # 脳出血 - 脳 + 消化管 = 消化管出血 ...

Embeddings are the rows of the input embedding (`model.embed.weight`), compared by
cosine similarity. A term that the tokenizer splits into several pieces is represented
by the mean of its pieces' rows (each result says how many pieces it had), since the
report's analogies are over whole medical words. Attention weights are recomputed
explicitly from each layer's inputs (softmax(q k^T x scale) under the same mask), by
hooks that only read: the training path is untouched.

Plots use matplotlib with a font that has Japanese glyphs: matplotlib-fontja's
IPAexGothic when installed (`pip install -e '.[notebooks]'`), else any installed CJK
font; without one, tokens are labelled by id ("#123") and the figure says so.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slm.model import SLM, Attention
from tokenizer.morph import STARTER_DICT

_CJK_FONTS = ("IPAexGothic", "IPAGothic", "Noto Sans CJK JP", "Noto Sans JP", "TakaoGothic", "VL Gothic",
              "Hiragino Sans", "Yu Gothic", "MS Gothic")


# ---------------------------------------------------------------- the embedding space


@dataclass
class Neighbour:
    token: str
    id: int
    similarity: float


def term_ids(tok, term: str | int) -> list[int]:
    """The token ids of a term (a token id stands for itself)."""
    if isinstance(term, int):
        return [term]
    ids = tok.encode(term)
    if not ids:
        raise ValueError(f"{term!r} encodes to no tokens")
    return ids


def term_vector(model: SLM, tok, term: str | int | torch.Tensor) -> torch.Tensor:
    """A term's embedding: its token's row, or the mean of its pieces' rows (a given vector as is)."""
    if isinstance(term, torch.Tensor):
        return term.float()
    weight = model.embed.weight.detach().float()
    return weight[term_ids(tok, term)].mean(dim=0)


def _special_ids(tok) -> set[int]:
    return set(getattr(tok, "special_tokens", {}).values())


@torch.no_grad()
def nearest_tokens(model: SLM, tok, query: str | int | torch.Tensor, k: int = 10, exclude: Sequence[str | int] = (),
                   include_special: bool = False) -> list[Neighbour]:
    """The k tokens whose embeddings are closest to `query` (a term, a token id or a vector) by cosine."""
    vector = term_vector(model, tok, query)
    weight = model.embed.weight.detach().float()
    similarity = F.cosine_similarity(weight, vector[None, :], dim=-1)
    banned = {i for term in exclude for i in term_ids(tok, term)}
    if not include_special:
        banned |= _special_ids(tok)
    if banned:
        similarity[list(banned)] = -math.inf
    values, ids = similarity.topk(min(k, len(similarity) - len(banned)))
    return [Neighbour(tok.id_to_piece(int(i)), int(i), float(v)) for v, i in zip(values, ids)]


def analogy(model: SLM, tok, a: str | int, b: str | int, c: str | int, k: int = 10,
            exclude_inputs: bool = True) -> list[Neighbour]:
    """a - b + c (Appendix A.3: 脳出血 - 脳 + 消化管 = 消化管出血), the inputs' own tokens left out."""
    vector = term_vector(model, tok, a) - term_vector(model, tok, b) + term_vector(model, tok, c)
    return nearest_tokens(model, tok, vector, k, exclude=(a, b, c) if exclude_inputs else ())


def project(vectors: np.ndarray | torch.Tensor, method: str = "pca", seed: int = 0, perplexity: float = 15.0,
            n_neighbors: int = 15) -> np.ndarray:
    """(n, 2) coordinates: PCA always; t-SNE (scikit-learn) and UMAP (umap-learn) when installed, with
    the report's hyperparameters (perplexity 15, 15 neighbours; Appendix A.2)."""
    x = vectors.detach().float().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors, np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"need at least 3 vectors of one size to project, got shape {x.shape}")
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE  # optional extra: slm[notebooks]
        except ImportError:
            raise ImportError("t-SNE needs scikit-learn: pip install -e '.[quality]'") from None
        return TSNE(2, perplexity=min(perplexity, len(x) - 1), random_state=seed, init="pca").fit_transform(x)
    if method == "umap":
        try:
            import umap  # optional: umap-learn
        except ImportError:
            raise ImportError("UMAP needs umap-learn: pip install umap-learn") from None
        return umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), random_state=seed).fit_transform(x)
    raise ValueError(f"method must be 'pca', 'tsne' or 'umap', not {method!r}")


def medical_terms(path: str | Path | None = None, per_category: int | None = None) -> dict[str, list[str]]:
    """A medical dictionary's terms by category (disease, drug, exam, ...); by default the
    tokenizer's own (tokenizer/dict/medical_terms.csv)."""
    path = STARTER_DICT if path is None else path
    groups: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            terms = groups.setdefault(row["category"], [])
            if per_category is None or len(terms) < per_category:
                terms.append(row["surface"])
    return groups


# ---------------------------------------------------------------- attention


@torch.no_grad()
def attention_weights(model: SLM, input_ids: torch.Tensor, doc_ids: torch.Tensor | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(n_layers, B, n_heads, T, T) attention probabilities of one forward pass, dropout off.

    Each layer's query and key projections are applied again to the input that layer
    received, with its rotary embedding and its mask (causal, padding, documents), so the
    weights are exactly what the layer's SDPA computed, without touching that path. (The mask is
    built here from doc_ids and padding, whatever attention kernel the model uses.)
    """
    captured: list[torch.Tensor] = []
    B, T = input_ids.shape
    config = model.config
    masks = {window: model._mask(B, T, 0, attention_mask, doc_ids, input_ids.device, window)  # boolean, whatever the kernel
             for window in {None, config.sliding_window if config.sliding_layers else None}}

    def hook(attn: Attention, args):
        x, cos, sin = args[:3]
        mask, is_causal = masks[config.sliding_window if attn.layer in config.sliding_layers else None]
        q, k = attn.queries_keys(x, cos, sin)
        k = k.repeat_interleave(attn.n_heads // attn.n_kv_heads, dim=1)
        scores = (q.float() @ k.float().transpose(-1, -2)) * attn.scale
        allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril() if is_causal else mask
        if allowed is not None:
            scores = scores.masked_fill(~allowed, -math.inf)
        captured.append(scores.softmax(dim=-1))

    handles = [layer.attn.register_forward_pre_hook(hook) for layer in model.layers]
    was_training = model.training
    model.eval()
    try:
        model(input_ids, doc_ids=doc_ids, attention_mask=attention_mask, logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return torch.stack(captured)


def pack(tok, documents: Sequence[str], max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Documents packed into one row as pretraining packs them (each framed by <begin_of_text> and
    <end_of_text>): (input_ids (1, T), doc_ids (1, T)), cut to max_len tokens."""
    ids, docs = [], []
    for n, text in enumerate(documents):
        piece = tok.encode(text, add_bos=True, add_eos=True)
        ids += piece
        docs += [n] * len(piece)
    ids, docs = ids[:max_len], docs[:max_len]
    return torch.tensor([ids]), torch.tensor([docs])


def cross_document_attention(weights: torch.Tensor, doc_ids: torch.Tensor) -> torch.Tensor:
    """(n_layers, n_heads): the share of attention that queries give to keys of other documents,
    averaged over the queries of the first row (0 exactly under document masking)."""
    docs = doc_ids[0]
    other = docs[:, None] != docs[None, :]  # (T, T)
    return (weights[:, 0] * other).sum(dim=-1).mean(dim=-1)


# ---------------------------------------------------------------- plotting


def japanese_font() -> str | None:
    """Make matplotlib draw Japanese: matplotlib-fontja's IPAexGothic, else an installed CJK font.
    Returns the font's name, or None (then label tokens by id: see `token_labels`)."""
    import matplotlib  # heavy: only when a plot is drawn
    from matplotlib import font_manager

    try:
        import matplotlib_fontja  # noqa: F401  (registers IPAexGothic and makes it the default)

        return "IPAexGothic"
    except ImportError:
        pass
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in _CJK_FONTS:
        if name in installed:
            matplotlib.rcParams["font.family"] = name
            return name
    warnings.warn("no font with Japanese glyphs: tokens are labelled by id (pip install matplotlib-fontja)",
                  stacklevel=2)
    return None


def token_labels(tok, ids: Sequence[int], font: str | None) -> list[str]:
    """What to print for each token: its piece (▁ for a space) with a Japanese font, else "#id"."""
    return [tok.id_to_piece(int(i)) if font else f"#{int(i)}" for i in ids]


def save_figure(fig, path: str | Path | None) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_embeddings(model: SLM, tok, groups: dict[str, Sequence[str]], method: str = "pca",
                    path: str | Path | None = None, title: str | None = None, annotate: bool = True):
    """Terms projected to 2-D, coloured by their group (e.g. the medical dictionary's categories)."""
    import matplotlib.pyplot as plt  # heavy: only when a plot is drawn

    font = japanese_font()
    terms = [(group, term) for group, members in groups.items() for term in members]
    coords = project(torch.stack([term_vector(model, tok, t) for _, t in terms]), method)
    fig, ax = plt.subplots(figsize=(9, 7))
    for n, group in enumerate(groups):
        rows = [i for i, (g, _) in enumerate(terms) if g == group]
        ax.scatter(coords[rows, 0], coords[rows, 1], s=18, color=plt.cm.tab10(n % 10), label=f"{group} ({len(rows)})")
    if annotate:
        for (_, term), (x, y) in zip(terms, coords):
            ax.annotate(term if font else f"#{term_ids(tok, term)[0]}", (x, y), fontsize=6, alpha=0.8)
    ax.set_title(title or f"token embeddings ({method.upper()}), terms coloured by category"
                 + ("" if font else "\n(no Japanese font: terms labelled by their first token id)"))
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return fig


def plot_attention(weights: torch.Tensor, tok, input_ids: torch.Tensor, layer: int, head: int | None = None,
                   path: str | Path | None = None, max_labels: int = 60):
    """One layer's attention map for the first row (a head, or the mean over heads): queries down,
    keys across; dashed lines at each <end_of_text>, where packed documents meet (Appendix A.6)."""
    import matplotlib.pyplot as plt  # heavy: only when a plot is drawn

    font = japanese_font()
    w = weights[layer, 0] if head is None else weights[layer, 0, head : head + 1]
    matrix = w.mean(dim=0).cpu().numpy()
    ids = input_ids[0].tolist()
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-6))
    fig.colorbar(image, ax=ax, fraction=0.046, label="attention weight")
    for pos in (i for i, t in enumerate(ids) if t == tok.eos_id):
        ax.axvline(pos + 0.5, color="white", lw=0.6, ls="--")
        ax.axhline(pos + 0.5, color="white", lw=0.6, ls="--")
    if len(ids) <= max_labels:
        labels = token_labels(tok, ids, font)
        ax.set_xticks(range(len(ids)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(ids)), labels, fontsize=6)
    which = "mean over heads" if head is None else f"head {head}"
    ax.set_title(f"attention, layer {layer + 1}, {which}")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    save_figure(fig, path)
    return fig
