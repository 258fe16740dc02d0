"""`refinery serve`: a small web page to try search (extra [serve]; the app is refinery/serve/app.py)."""

from __future__ import annotations

from pathlib import Path

import click

from refinery.cli.common import echo, finite, main
from refinery.errors import RefineryError
from refinery.serve.app import NEEDS_EXTRA, create_app, hosts_to_answer, is_loopback
from refinery.serve.upload import MAX_UPLOAD_BYTES, MB


@main.command("serve")
@click.argument(
    "index_paths",
    metavar="INDEX...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. 0.0.0.0 lets other machines (a phone) in, with no password.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "coreml"]), default="auto", show_default=True)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(0, 4096, min_open=True),
    default=MAX_UPLOAD_BYTES / MB,
    show_default=True,
    callback=finite,
    help="Largest picture accepted, in MB (2^20 bytes).",
)
def serve_command(index_paths: tuple[Path, ...], host: str, port: int, device: str, max_upload_mb: float) -> None:
    """A small web page to try search on INDEX (one per model): upload a picture or use a
    phone's camera, see the best matches.

    Example: refinery serve photos.index --port 8000, then open http://127.0.0.1:8000
    """
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError:
        raise click.ClickException(NEEDS_EXTRA) from None
    from refinery.retrieval.index import RetrievalIndex

    try:
        indexes = [RetrievalIndex.load(path, device=device) for path in index_paths]
        for index in indexes:
            index.embedder.load()  # an unavailable device fails here, not at the first search
    except RefineryError as e:
        raise click.ClickException(str(e)) from e
    if not is_loopback(host):
        echo(
            f"warning: listening on {host}: anyone who can reach this machine can search these "
            "indexes and see their pictures' thumbnails",
            err=True,
        )
    check_listen(host, port)
    app = create_app(indexes, int(max_upload_mb * MB), allowed_hosts=hosts_to_answer(host))
    uvicorn.run(app, host=host, port=port, server_header=False)


def check_listen(host: str, port: int) -> None:
    """One line now, not uvicorn's log and exit code 3 later, when host:port cannot be listened
    on (a port in use, an address this machine does not have, a name that does not resolve)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as e:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --host or --port"
        ) from None
