"""`refinery embed`, `index`, `search` and `eval`: the embeddings of a folder, and search by image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from refinery.cli.common import (
    EXIT_FILE_ERRORS,
    ProgressBars,
    echo,
    handle_errors,
    main,
    make_embedder,
    model_options,
    open_cache,
    settings,
)
from refinery.errors import NoFace, RefineryError

if TYPE_CHECKING:
    from refinery.retrieval.index import Hit

log = logging.getLogger("refinery")


@main.command("embed")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output .npz with arrays `paths` (relative to FOLDER) and `vectors` (float32).",
)
@model_options
@click.pass_context
@handle_errors
def embed_cmd(
    ctx: click.Context,
    folder: Path,
    out: Path,
    config_path: Path | None,
    assignments: tuple[str, ...],
    model: str | None,
    device: str | None,
    batch_size: int | None,
) -> None:
    """Embed every image under FOLDER with the runner (onnxruntime, no torch).

    Example: refinery embed photos/ --out vectors.npz
    """
    import numpy as np

    from refinery.dedup.featurepass import embed_every_picture
    from refinery.io.outputs import Kind, Output, check_outputs, output_path
    from refinery.runner.session import l2_normalize

    check_outputs([Output(out, "--out", Kind.NPZ)], inputs=[folder, config_path])
    cfg = settings(config_path, assignments, model, device, batch_size)
    embedder = make_embedder(cfg).load()  # the device asked for, or one line saying why not
    cache = open_cache(cfg, embedder, folder)
    try:
        with ProgressBars(ctx) as bars:
            found = embed_every_picture(folder, cfg, embedder, bars, cache)
    finally:
        if cache:
            cache.close()
    with output_path(out, Kind.NPZ) as tmp, open(tmp, "wb") as f:
        np.savez(f, paths=np.array(found.paths, dtype=str), vectors=l2_normalize(found.vectors).astype(np.float32))
    log.info(
        "wrote %s: %d vectors of %d-d; %d files unreadable", out, len(found.paths), found.vectors.shape[1], found.errors
    )
    if found.errors:
        ctx.exit(EXIT_FILE_ERRORS)


@main.command("index")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The index folder to write (built again in place, incrementally, if it exists).",
)
@click.option(
    "--faces",
    is_flag=True,
    help="Index the largest face of each picture (Haar cascade); pictures without one are listed, not indexed.",
)
@click.option("--sift", is_flag=True, help="Also keep SIFT features, for `refinery search --method sift`.")
@model_options
@click.pass_context
@handle_errors
def index_cmd(
    ctx: click.Context,
    folder: Path,
    out: Path,
    faces: bool,
    sift: bool,
    config_path: Path | None,
    assignments: tuple[str, ...],
    model: str | None,
    device: str | None,
    batch_size: int | None,
) -> None:
    """Make FOLDER searchable by image: embeddings (FAISS), thumbnails, optionally SIFT.

    Example: refinery index photos/ --out photos.index
    """
    from refinery.retrieval.index import RetrievalIndex, build_index
    from refinery.retrieval.storage import check_index_folder

    cfg = settings(config_path, assignments, model, device, batch_size)
    check_index_folder(out)  # before the work: an OUT that is not an index is never written into
    embedder = make_embedder(cfg)
    previous = None
    if (out / "index.json").exists():
        try:
            previous = RetrievalIndex.load(out, device="cpu")
        except RefineryError as e:
            log.info("not reusing %s: %s", out, e)
    cache = open_cache(cfg, embedder, folder, "faces" if faces else "")
    try:
        with ProgressBars(ctx) as bars:
            index = build_index(
                folder, cfg, embedder, cache=cache, progress=bars, faces=faces, with_sift=sift, previous=previous
            )
    finally:
        if cache:
            cache.close()
    index.save(out)
    for rel, why in index.meta["left_out"]:
        log.warning("%s: left out: %s", folder / rel, why)
    echo(
        f"indexed {len(index.paths)} pictures of {folder} in {out} ({index.meta['kind']} index, "
        f"{index.meta['model']['name']}, {index.meta['cached']} embeddings from the cache); "
        f"{len(index.meta['left_out'])} left out"
    )


@main.command("search")
@click.argument("index_path", metavar="INDEX", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("queries", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--text",
    "texts",
    multiple=True,
    metavar="WORDS",
    help='Search by words (a CLIP index): --text "a red truck at night"; may be repeated.',
)
@click.option("-k", type=click.IntRange(1), default=10, show_default=True, help="Results per query.")
@click.option(
    "--method",
    default="embedding",
    show_default=True,
    help="embedding, pixel-l1, pixel-l2, pixel-cosine, pixel-pearson, or sift (index built with --sift).",
)
@click.option(
    "--metric",
    type=click.Choice(["cosine", "l2"]),
    default="cosine",
    show_default=True,
    help="For embeddings: cosine similarity (higher is closer) or squared L2 distance (lower is).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{query, results: [{rank, score, path}]}].")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a contact sheet of each query and its results.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "coreml"]), default="auto", show_default=True)
@click.pass_context
@handle_errors
def search_cmd(
    ctx: click.Context,
    index_path: Path,
    queries: tuple[Path, ...],
    texts: tuple[str, ...],
    k: int,
    method: str,
    metric: str,
    as_json: bool,
    html_out: Path | None,
    device: str,
) -> None:
    """The pictures in INDEX most like each QUERY picture, or nearest each --text: rank, score, path.

    Example: refinery search photos.index query.jpg -k 5

    By words (an index built with a CLIP image model): refinery search photos.index --text "a red truck at night"
    """
    import json

    from refinery.errors import UnreadableImage
    from refinery.io.images import read_bytes
    from refinery.io.outputs import Kind, Output, check_outputs
    from refinery.retrieval.index import RetrievalIndex

    if not queries and not texts:
        raise click.UsageError("give query pictures, or --text WORDS")
    if texts and method != "embedding":
        raise click.UsageError(f"--text searches by embedding only, not by {method}")
    sheet = [Output(html_out, "--html", Kind.PAGE) if html_out else None]
    check_outputs(sheet, inputs=[index_path, *queries])
    index = RetrievalIndex.load(index_path, device=device)
    check_outputs(sheet, inputs=[index.root])  # the indexed pictures, which the sheet shows
    answers: list[tuple[Path | str, list[Hit]]] = [(text, index.search_text(text, k, metric)) for text in texts]
    failed = 0
    for query in queries:
        try:
            hits = index.search(read_bytes(query), str(query), k, method, metric)
        except (UnreadableImage, NoFace) as e:  # this query only: the others go on
            log.error("%s", e)
            failed += 1
            continue
        answers.append((query, hits))
    if as_json:
        # ASCII: a byte of a name that is not UTF-8 is written \udcNN (Python's surrogateescape,
        # as the dedup report writes it): os.fsencode(json.loads(...)) gives the name's bytes back.
        echo(
            json.dumps(
                [{"query": str(q), "results": [vars(h) for h in hits]} for q, hits in answers],
                indent=1,
                ensure_ascii=True,
            ),
            lines=True,
        )
    else:
        for asked, hits in answers:
            echo(f"query: {asked}" if isinstance(asked, Path) else f'query: "{asked}"')
            for h in hits:
                echo(f"{h.rank:4d}  {h.score:9.4f}  {h.path}")
    if html_out:
        from refinery.retrieval.sheet import write_sheet

        write_sheet(html_out, index.root, answers)
        log.info("wrote %s", html_out)
    if failed:
        ctx.exit(EXIT_FILE_ERRORS)


@main.command("eval")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--models",
    default="default",
    show_default=True,
    help="Comma-separated embedding models to compare (each an .onnx path or 'default').",
)
@click.option(
    "--methods",
    default=None,
    help="Comma-separated subset of: embedding, pixel-l1, pixel-l2, pixel-cosine, pixel-pearson, sift "
    "(default: all of these), and text (CLIP models: each class asked by words, 'a photo of a CLASS.').",
)
@click.option("-k", type=click.IntRange(1), default=5, show_default=True, help="k of precision@k and recall@k.")
@click.option("--faces", is_flag=True, help="Crop the largest face first, for queries and gallery.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Write {"methods": {NAME: {top1, top5, precision_at_k, recall_at_k, map, queries_per_s}}}.',
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "coreml"]), default="auto", show_default=True)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE")
@click.pass_context
@handle_errors
def eval_cmd(
    ctx: click.Context,
    folder: Path,
    models: str,
    methods: str | None,
    k: int,
    faces: bool,
    json_out: Path | None,
    device: str,
    config_path: Path | None,
    assignments: tuple[str, ...],
) -> None:
    """Retrieval quality of each method on FOLDER's class sub-folders (held-out queries).

    Example: refinery eval /usr/share/tuxpaint/stamps --json eval.json
    """
    import json

    from refinery.io.outputs import Kind, Output, check_outputs, marked, write_output
    from refinery.retrieval.evaluate import evaluate, table

    check_outputs([Output(json_out, "--json", Kind.EVAL) if json_out else None], inputs=[folder, config_path])
    cfg = settings(config_path, assignments, None, None, None)
    wanted = [m.strip() for m in methods.split(",")] if methods else None
    with ProgressBars(ctx) as bars:
        results = evaluate(
            folder,
            cfg,
            [m.strip() for m in models.split(",")],
            wanted,
            k,
            faces,
            device,
            bars,
            cache_for=lambda emb: open_cache(cfg, emb, folder, "faces" if faces else ""),
        )
    echo(table(results, k), lines=True)
    if json_out:
        write_output(
            json_out,
            Kind.EVAL,
            json.dumps(
                marked(Kind.EVAL, {"k": k, "methods": {name: s.to_dict() for name, s in results.items()}}), indent=1
            ),
        )
