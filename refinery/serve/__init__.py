"""`refinery serve`: a small web page to try image retrieval on one or more indexes.

The page (plain HTML and a little JavaScript, no external assets, so it works offline) lets
one choose an index (one per model), a method and k, upload a picture - or take one with a
phone's camera - or, on an index whose model is a CLIP (it has a text tower), type words, and
see the best matches as thumbnails with rank, score and path.

    GET  /                        the page
    POST /api/search              multipart: file (a picture) or text (words, method embedding
                                  only), index, method, k, metric -> JSON
    GET  /image/{index}/{row}     a JPEG thumbnail of the picture at that row of that index

Security rules, and why:
- Pictures are addressed by (index, row), never by a path from the request, and a row's
  path must resolve inside its index's folder: nothing else on the machine can be read.
- Uploads are read in chunks and refused (413) as soon as they pass the limit; they stay
  in memory and are never written to disk (Starlette's own form parser spools large files
  to a temporary file, so the multipart body is parsed here).
- A slow or stalled client costs its own request only: nothing that other requests wait on
  (a lock, a count of uploads in flight) is held while a body is read. A body must keep
  coming (no byte for UPLOAD_IDLE_SECONDS: 408) and end in time (UPLOAD_SECONDS: 408), and
  memory is bounded by a byte budget shared by all requests, taken as bytes arrive: one that
  would pass it is refused at once (503), never queued, and a stalled client holds only the
  bytes it sent. The search lock is held around the search alone.
- Bound to 127.0.0.1 by default, and then only Host headers naming this machine are
  answered, so a web page in the user's browser cannot reach the index by DNS rebinding.

fastapi, uvicorn and python-multipart are the [serve] extra: they are imported inside the
functions that need them, so `refinery --help` neither needs nor loads them.

The app (routes, the page, the hosts answered) is app.py; a request's body read within those
limits, upload.py; the search behind the page, and the thumbnails it shows, search.py.
"""
