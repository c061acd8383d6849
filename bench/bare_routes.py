"""The references the HTTP benchmarks measure the app against: bare Flask routes doing only what any route
must (answer the GIF; read and parse the JSON body, answer a small JSON), served by bench/wsgi_serve.py in
``popsync serve``'s gunicorn configuration. Nothing here touches a database.
"""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import jsonify

from app.storefront.submissions import read_json_body
from app.tracking.views import PIXEL

pixel_app = Flask("bare_pixel")


@pixel_app.get("/t/o/<token>.gif")
def pixel(token: str) -> Response:
    """The 43-byte GIF with the headers the real pixel sends."""
    return Response(
        PIXEL,
        status=200,
        mimetype="image/gif",
        headers={"Cache-Control": "no-store", "Content-Length": str(len(PIXEL))},
    )


submissions_app = Flask("bare_submissions")


@submissions_app.post("/storefront/submissions")
def submission() -> Response:
    """The same body parsing as the real route (64 KB limit, any Content-Type), then ``{"ok": true}``."""
    body = read_json_body()
    response = jsonify({"ok": bool(body)})
    response.headers["Vary"] = "Origin"
    return response


@submissions_app.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})
