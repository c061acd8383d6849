"""``GET /demo/store``: a small fake shop page with the popup embed, for ``popsync demo`` and browser tests.

Served only when ``DEMO_STOREFRONT`` is on (the default in development, off in production: 404). The page
carries the embed markup of docs/storefront.md exactly as a theme app embed renders it (no proxy path: it
posts to the app with CORS, from the app's own origin) and an inline script of its own that sets
``window.hostPageReady``, so a browser test can see the host page still works when popsync does not answer.
"""

from __future__ import annotations

from html import escape

from flask import Blueprint
from flask import Response
from flask import abort
from flask import request

from app.config import current_settings

bp = Blueprint("demo_store", __name__, url_prefix="/demo")

DEMO_SHOP = "demo.myshopify.com"
_LOCALES = ("en", "fr")

_PAGE = """<!doctype html>
<html lang="{locale}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Maple &amp; Moss — demo store</title>
<style>
  :root {{ --ink: #1f2a24; --moss: #3f6b4f; --paper: #faf7f2; --line: #e6dfd3; }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
         background: var(--paper); }}
  header {{ display: flex; justify-content: space-between; align-items: center; padding: 18px 32px;
           border-bottom: 1px solid var(--line); background: #fff; }}
  header .brand {{ font-weight: 700; letter-spacing: .04em; font-size: 20px; }}
  header nav a {{ margin-left: 20px; color: var(--ink); text-decoration: none; }}
  .hero {{ padding: 72px 32px; text-align: center; background: linear-gradient(160deg, #e9efe6, #f6efe4); }}
  .hero h1 {{ font-size: clamp(28px, 5vw, 48px); margin: 0 0 12px; }}
  .hero p {{ max-width: 560px; margin: 0 auto 24px; }}
  .button {{ display: inline-block; padding: 12px 22px; border-radius: 999px; background: var(--moss);
            color: #fff; text-decoration: none; }}
  .grid {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 24px;
          padding: 48px 32px; max-width: 1100px; margin: 0 auto; }}
  .card {{ background: #fff; border: 1px solid var(--line); border-radius: 14px; overflow: hidden; }}
  .card .swatch {{ height: 160px; }}
  .card div.text {{ padding: 14px 16px; }}
  .card .price {{ color: var(--moss); font-weight: 600; }}
  footer {{ padding: 32px; text-align: center; font-size: 14px; color: #6b6b6b; }}
  .status {{ font-size: 13px; color: #6b6b6b; }}
</style>
</head>
<body>
<header>
  <span class="brand">Maple &amp; Moss</span>
  <nav><a href="?locale=en">English</a><a href="?locale=fr">Français</a></nav>
</header>
<section class="hero">
  <h1>Slow mornings, good tea.</h1>
  <p>Small-batch loose-leaf teas and stoneware, packed by hand. This is popsync's demo storefront: wait a
     moment and the sign-up popup opens.</p>
  <a class="button" href="#shop">Shop the collection</a>
</section>
<section class="grid" id="shop">
  <article class="card"><div class="swatch" style="background:#c9d8c5"></div>
    <div class="text">Sencha Morning<br><span class="price">$14.00</span></div></article>
  <article class="card"><div class="swatch" style="background:#e3c9a8"></div>
    <div class="text">Roasted Hojicha<br><span class="price">$16.00</span></div></article>
  <article class="card"><div class="swatch" style="background:#b9c4d6"></div>
    <div class="text">Earl Grey Cream<br><span class="price">$12.00</span></div></article>
  <article class="card"><div class="swatch" style="background:#d8c3cf"></div>
    <div class="text">Stoneware Cup<br><span class="price">$22.00</span></div></article>
</section>
<footer>
  <p class="status" id="host-status">Loading…</p>
  Maple &amp; Moss is not a real shop. Submissions go to popsync's demo contact list and development store.
</footer>
<script>
  // The host page's own script: it must keep working whatever popsync does.
  window.hostPageReady = true;
  document.getElementById("host-status").textContent = "The store's own script ran.";
</script>
<div id="popsync-root" hidden
     data-app-url="{app_url}"
     data-shop="{shop}"
     data-platform="shopify"
     data-locale="{locale}"></div>
<script src="/storefront/popup.js" defer></script>
</body>
</html>
"""


@bp.get("/store")
def demo_store() -> Response:
    """The demo storefront page with the popup embed; 404 unless DEMO_STOREFRONT is on."""
    settings = current_settings()
    if not settings.demo_storefront:
        abort(404)
    locale = request.args.get("locale", "en")
    if locale not in _LOCALES:
        locale = "en"
    page = _PAGE.format(app_url=escape(settings.app_url), shop=escape(DEMO_SHOP), locale=locale)
    response = Response(page, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
