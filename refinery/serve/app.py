"""The web app: the page, the search route and the thumbnails' route over the served
indexes, the headers every answer carries, and the Host names answered."""

from __future__ import annotations

import html
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from refinery import install_hint
from refinery.errors import BadUpload, ModelError, NoFace, NoTextTower, UnreadableImage
from refinery.pages import asset, csp_hash, render
from refinery.serve.search import MAX_K, Searcher, Served, choose, thumbnail_jpeg
from refinery.serve.upload import (
    DRAIN_SECONDS,
    FORM_OVERHEAD,
    MAX_TEXT_BYTES,
    MAX_UPLOAD_BYTES,
    UPLOAD_IDLE_SECONDS,
    UPLOAD_SECONDS,
    UPLOADS_AT_ONCE,
    ByteBudget,
    Upload,
    body_chunks,
    drain,
    read_upload,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import FastAPI, Request
    from starlette.responses import Response

    from refinery.retrieval.index import Hit, RetrievalIndex

log = logging.getLogger(__name__)

NEEDS_EXTRA = f"serve needs the [serve] extra: {install_hint('serve')}"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]


def _image_route(served: list[Served]) -> Callable[[Request], Response]:
    """GET /image/N/ROW: a thumbnail of picture ROW of index N (404 for any other)."""
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    def image(request: Request) -> Response:
        number, row = request.path_params["index_no"], request.path_params["row"]
        if not (number < len(served) and row < len(served[number].index.paths)):
            raise HTTPException(404, "no such picture")
        index = served[number].index
        try:
            jpeg = thumbnail_jpeg(index.root, index.paths[row])
        except UnreadableImage as e:
            raise HTTPException(404, f"picture {row} cannot be shown: {e.reason}") from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    return image


def _answer(
    served: list[Served], number: int, upload: Upload, method: str, metric: str, hits: list[Hit]
) -> dict[str, Any]:
    """A search's JSON answer: what was asked, which way a score points, and each hit with the
    URL of its thumbnail."""
    from refinery.retrieval.methods import closer

    rows = served[number].rows
    return {
        "query": upload.query,
        "index": number,
        "model": served[number].index.meta["model"]["name"],
        "method": method,
        "metric": metric,
        "closer": closer(method, metric),  # which way a score points: "higher" or "lower"
        "results": [
            {"rank": h.rank, "score": h.score, "path": h.path, "url": f"/image/{number}/{rows[h.path]}"} for h in hits
        ],
    }


PAGE_SIZE = 48  # pictures a page of the index shows


def _pictures_route(served: list[Served]) -> Callable[[Request], Awaitable[Response]]:
    """GET /api/pictures?index=N&page=P: the index's pictures, PAGE_SIZE a page in path order,
    each with the URL of its thumbnail (what a person browses before searching)."""
    from starlette.responses import JSONResponse

    async def pictures(request: Request) -> Response:
        try:
            number, page = int(request.query_params.get("index", "0")), int(request.query_params.get("page", "1"))
        except ValueError:
            return JSONResponse({"detail": "index and page must be whole numbers"}, 400)
        if not 0 <= number < len(served):
            return JSONResponse({"detail": f"no index number {number}; there are {len(served)}"}, 400)
        paths = served[number].index.paths
        pages = max(1, -(-len(paths) // PAGE_SIZE))
        if not 1 <= page <= pages:
            return JSONResponse({"detail": f"page must be between 1 and {pages}"}, 400)
        first = (page - 1) * PAGE_SIZE
        shown = [
            {"path": path, "url": f"/image/{number}/{row}"}
            for row, path in enumerate(paths[first : first + PAGE_SIZE], start=first)
        ]
        return JSONResponse({"index": number, "page": page, "pages": pages, "total": len(paths), "pictures": shown})

    return pictures


async def _security_headers(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def create_app(
    indexes: list[RetrievalIndex],
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    allowed_hosts: list[str] | None = None,
    *,
    upload_idle_seconds: float = UPLOAD_IDLE_SECONDS,
    upload_seconds: float = UPLOAD_SECONDS,
) -> FastAPI:
    """The web app over `indexes` (one per model). `allowed_hosts`: the Host names answered
    (default: this machine's loopback names; ["*"] for any). `upload_idle_seconds`,
    `upload_seconds`: how long a body may stop coming, and take in all, before a 408."""
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect
    from starlette.responses import HTMLResponse, JSONResponse, Response

    served = [Served.of(index) for index in indexes]
    page = render_page(served, max_upload_bytes)
    search_one = Searcher(served)
    budget = ByteBudget(UPLOADS_AT_ONCE * (max_upload_bytes + FORM_OVERHEAD))

    async def index_page(request: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    async def search(request: Request) -> Response:
        # The body is read holding nothing other requests wait on: only its own bytes of the
        # budget, given back when the request ends (its picture is no longer held).
        claim, stream = budget.claim(), request.stream()
        try:
            upload = await read_upload(
                request, body_chunks(stream, upload_idle_seconds, upload_seconds), max_upload_bytes, claim
            )
            number, method, k, metric = choose(upload, served)
            hits = await run_in_threadpool(search_one, number, upload, method, k, metric)
        except BadUpload as e:
            claim.release()  # before draining: dropping the rest of a body holds no memory
            if e.status in (413, 503):  # 408: the client is not sending, nothing to drain
                await drain(request, e, body_chunks(stream, upload_idle_seconds, DRAIN_SECONDS))
            return JSONResponse({"detail": str(e)}, e.status, headers={"Connection": "close"})
        except UnreadableImage as e:
            return JSONResponse({"detail": e.reason}, 400)
        except (NoFace, NoTextTower) as e:
            return JSONResponse({"detail": str(e)}, 400)
        except ModelError as e:  # e.g. a text tower gone or changed since the index was made
            log.error("search on index %d failed: %s", number, e)  # its paths stay on the server
            return JSONResponse({"detail": "the search failed on the server; its log says why"}, 500)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening
        finally:
            claim.release()
            await stream.aclose()
        return JSONResponse(_answer(served, number, upload, method, metric, hits))

    # No /docs: Swagger UI comes from a CDN, and this page is the documentation.
    app = FastAPI(title="refinery serve", docs_url=None, redoc_url=None, openapi_url=None)
    # Plain Starlette routes: FastAPI would resolve these functions' annotations, which are
    # strings here (`from __future__ import annotations`) naming imports local to this
    # function; and the form is parsed by hand anyway. `:int` matches digits only, so a
    # row like `-1` or `../x` matches no route: 404.
    app.add_route("/", index_page, methods=["GET"])
    app.add_route("/api/search", search, methods=["POST"])
    app.add_route("/api/pictures", _pictures_route(served), methods=["GET"])
    app.add_route("/image/{index_no:int}/{row:int}", _image_route(served), methods=["GET"])
    app.middleware("http")(_security_headers)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)
    return app


# The page runs only its own inline script and style (by hash), talks only to this server,
# shows only this server's images, the query picture (a blob: URL) and no favicon (data:,),
# and is not framed.
CSP = (
    f"default-src 'none'; script-src {csp_hash(asset('search.js'))}; "
    f"style-src {csp_hash(asset('search.css'))}; "
    "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def render_page(served: list[Served], max_upload_bytes: int) -> str:
    """The search page; every name from an index is HTML-escaped."""
    options = "".join(
        f'<option value="{i}" data-methods="{html.escape(",".join(s.index.gallery.methods()))}" '
        f'data-text="{str(s.index.searchable_by_text).lower()}">{html.escape(s.label)}</option>'
        for i, s in enumerate(served)
    )
    return render(
        "search.html",
        style=asset("search.css"),
        script=asset("search.js"),
        options=options,
        max_bytes=max_upload_bytes,
        max_text_bytes=MAX_TEXT_BYTES,
        max_k=MAX_K,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hosts_to_answer(host: str) -> list[str]:
    """The Host header names to answer when listening on `host`: on IPv4 loopback, this
    machine's names only (a page rebound to 127.0.0.1 by DNS sends its own name); elsewhere
    any, as the names people use to reach the machine cannot be known here."""
    # IPv6 loopback would deserve it too, but Starlette's TrustedHostMiddleware cuts the Host
    # "[::1]:8000" at its first ":".
    if is_loopback(host) and ":" not in host:
        return sorted({*LOOPBACK_HOSTS, host})
    return ["*"]
