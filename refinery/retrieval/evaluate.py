"""How well each method retrieves: held-out queries over a folder of class sub-folders.

Every picture's class is its first folder under DIR. From each class a fixed share of the
pictures (chosen by a hash of the path, so the same every run and on every machine) are
queries; the rest are the gallery. Each query ranks the whole gallery; a gallery picture is
relevant when it has the query's class.

    top1, top5        share of queries with a relevant picture at rank 1 / within the first 5
    precision_at_k    relevant share of the first k, averaged over queries
    recall_at_k       share of the query's relevant gallery pictures found in the first k
    map               mean average precision over the whole ranking
    queries_per_s     queries answered per second, each from its file: decode, features, ranking

With a CLIP model, method `text` asks by words instead: one query per class, the prompt
"a photo of a CLASS." (underscores as spaces), ranked over the same gallery - zero-shot
retrieval on the user's own classes, the figure real CLIP weights are chosen by.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from refinery.config import Config
from refinery.errors import NoFace, RefineryError, UnreadableImage
from refinery.io.cache import FeatureCache
from refinery.io.images import read_bytes, to_input
from refinery.parallel import Progress, cpu_count, ordered_map
from refinery.retrieval.index import Gallery, Query, QueryMaker, build_index
from refinery.retrieval.methods import PIXEL_METHODS, pixel_vector, sift_features
from refinery.runner.session import Embedder

QUERY_SHARE = 0.2
PROMPT = "a photo of a {}."  # CLIP's own zero-shot template (Radford et al. 2021)


@dataclass
class Scores:
    top1: float
    top5: float
    precision_at_k: float
    recall_at_k: float
    map: float
    queries_per_s: float
    queries: int

    def to_dict(self) -> dict[str, float]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def label_of(rel: str) -> str:
    return rel.split("/", 1)[0]


def split_queries(paths: list[str], share: float = QUERY_SHARE) -> tuple[list[str], list[str]]:
    """(gallery, queries): per class, `share` of its pictures (at least one, when it has two or
    more) by the order of a hash of their paths."""
    by_class: dict[str, list[str]] = {}
    for rel in paths:
        if "/" in rel:  # pictures straight under DIR have no class
            by_class.setdefault(label_of(rel), []).append(rel)
    if len(by_class) < 2:
        raise RefineryError("eval needs a folder of class sub-folders (two or more), one class per sub-folder")
    gallery, queries = [], []
    for members in by_class.values():
        members.sort(key=lambda rel: hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest())
        n = max(1, round(share * len(members))) if len(members) >= 2 else 0
        queries += members[:n]
        gallery += members[n:]
    return sorted(gallery), sorted(queries)


def average_precision(relevant: np.ndarray) -> float:
    """AP of one ranking, `relevant` a boolean per rank (the whole gallery)."""
    hits = np.cumsum(relevant)
    if hits[-1] == 0:
        return 0.0
    ranks = np.flatnonzero(relevant) + 1
    return float(np.mean(hits[relevant] / ranks))


def score_rankings(
    rankings: list[np.ndarray], query_labels: list[str], gallery_labels: np.ndarray, k: int, seconds: float
) -> Scores:
    """The metrics of one method from its rankings (gallery rows best first, one per query)."""
    per_class = Counter(gallery_labels.tolist())
    rows = []
    for order, label in zip(rankings, query_labels, strict=True):
        relevant = gallery_labels[order] == label
        found = relevant[:k].sum()
        rows.append(
            (relevant[0], relevant[:5].any(), found / k, found / max(1, per_class[label]), average_precision(relevant))
        )
    top1, top5, p_k, r_k, ap = (float(np.mean(column)) for column in zip(*rows, strict=True))
    return Scores(top1, top5, p_k, r_k, ap, len(rankings) / seconds if seconds else 0.0, len(rankings))


def evaluate(
    root: Path,
    cfg: Config,
    models: list[str],
    methods: list[str] | None = None,
    k: int = 5,
    faces: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
    cache_for: Callable[[Embedder], FeatureCache | None] | None = None,
) -> dict[str, Scores]:
    """Scores of every method (embeddings of each model, pixel metrics, SIFT) on DIR's classes.

    The gallery is indexed once per model (embeddings from the feature cache when there is
    one); each query is then answered from its file, timed.
    """
    root = Path(root)
    results: dict[str, Scores] = {}
    for n, model in enumerate(models):
        embedder = Embedder(model, device=device, batch_size=cfg.model.batch_size, threads=cfg.model.threads or 1)
        cache = cache_for(embedder) if cache_for else None
        first = n == 0  # pixel and SIFT results do not depend on the model: measured once
        want_sift = first and (methods is None or "sift" in methods)
        index = build_index(root, cfg, embedder, cache=cache, progress=progress, faces=faces, with_sift=want_sift)
        gallery_paths, query_paths = split_queries(index.paths)
        rows = {rel: i for i, rel in enumerate(index.paths)}
        g = np.array([rows[rel] for rel in gallery_paths])
        gallery = Gallery(
            gallery_paths,
            index.gallery.vectors[g],
            index.gallery.pixels[g],
            [index.gallery.sift[i] for i in g] if index.gallery.sift is not None else None,
        )
        labels = np.array([label_of(rel) for rel in gallery_paths])
        wanted = [m for m in gallery.methods() if (m == "embedding" or first) and (methods is None or m in methods)]
        maker = QueryMaker(embedder, faces, want_sift)
        for method in wanted:
            name = f"embedding:{embedder.path.stem}" if method == "embedding" else method
            results[name] = run_queries(root, query_paths, gallery, labels, method, maker, k)
        if methods is not None and "text" in methods:
            results[f"text:{embedder.path.stem}"] = run_text_queries(embedder, gallery, labels, k, device)
    return results


def run_text_queries(embedder: Embedder, gallery: Gallery, labels: np.ndarray, k: int, device: str) -> Scores:
    """One query by words per class ("a photo of a CLASS."), timed; NoTextTower for a model without words."""
    from refinery.runner.text import text_tower_of

    text = text_tower_of(embedder.path, embedder.spec, device)
    classes = sorted(set(labels.tolist()))
    start = time.perf_counter()
    rankings = []
    for label in classes:
        vector = text.embed([PROMPT.format(label.replace("_", " "))])[0]
        rankings.append(gallery.scores(Query(label, vector, np.zeros(0, np.uint8), None), "embedding")[0])
    return score_rankings(rankings, classes, labels, k, time.perf_counter() - start)


def run_queries(
    root: Path, query_paths: list[str], gallery: Gallery, labels: np.ndarray, method: str, maker: QueryMaker, k: int
) -> Scores:
    """Answer every query from its file with `method`, timing the whole of it."""

    def answer(rel: str) -> np.ndarray | None:
        try:
            image = maker.picture(read_bytes(root / rel), rel)
        except (UnreadableImage, NoFace):
            return None
        empty = np.zeros(0, np.float32)
        if method == "embedding":
            query = Query(rel, maker.embedder.embed(to_input(image, maker.embedder.spec)[None])[0], empty, None)
        elif method in PIXEL_METHODS:
            query = Query(rel, empty, pixel_vector(image), None)
        else:
            query = Query(rel, empty, empty, sift_features(image))
        return gallery.scores(query, method)[0]

    start = time.perf_counter()
    workers = cpu_count()
    answers = list(ordered_map(answer, query_paths, workers, ahead=4 * workers))
    seconds = time.perf_counter() - start
    kept = [(order, label_of(rel)) for order, rel in zip(answers, query_paths, strict=True) if order is not None]
    return score_rankings([o for o, _ in kept], [lab for _, lab in kept], labels, k, seconds)


def table(results: dict[str, Scores], k: int) -> str:
    """The results as a markdown table, best mAP first."""
    lines = [
        f"| method | top-1 | top-5 | precision@{k} | recall@{k} | mAP | queries/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in sorted(results.items(), key=lambda item: -item[1].map):
        lines.append(
            f"| {name} | {s.top1:.3f} | {s.top5:.3f} | {s.precision_at_k:.3f} | {s.recall_at_k:.3f} | "
            f"{s.map:.3f} | {s.queries_per_s:.1f} |"
        )
    return "\n".join(lines)
