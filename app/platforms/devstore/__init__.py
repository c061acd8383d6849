"""The built-in development store: a WSGI app speaking the subset of Shopify's Admin GraphQL API (executed
by graphql-core on the official schema, trimmed) and of SHOPLINE's Open API that popsync uses, with the
platforms' rules, rate limits, signed webhooks back to the app, and injectable faults.

    store = DevStore(app_url="http://127.0.0.1:8000", webhook_secrets={"shopify": …, "shopline": …})
    wsgi_app = create_devstore(store)

Routes: ``/admin/api/<version>/graphql.json`` (Shopify), ``/admin/openapi/<version>/…`` (SHOPLINE),
``/devstore/customers`` (what a merchant would see in the store's Customers), ``/devstore/faults``, and
``/devstore/bulk/<token>.jsonl`` (a Shopify bulk export's result, with no token like Shopify's signed storage
links; registered with the Shopify blueprint).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask import jsonify
from flask import render_template_string
from flask import request

from app.platforms.devstore.state import DevStore

__all__ = ["DevStore", "create_devstore"]

CUSTOMERS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Development store: customers</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem;color:#202223}
table{border-collapse:collapse;width:100%;
margin-bottom:2rem}th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e1e3e5}
th{background:#f6f6f7}h2{font-size:1.05rem;margin-top:2rem}.muted{color:#6d7175}</style></head><body>
<h1>Development store — customers</h1>
<p class="muted">What each shop's Customers page would show. Refreshes every 2 seconds.</p>
{% for shop in shops %}
<h2>{{ shop.domain }} <span class="muted">({{ shop.platform }})</span></h2>
<table><thead><tr><th>id</th><th>name</th><th>email</th><th>phone</th><th>email consent</th>
<th>SMS consent</th><th>tags</th><th>updated</th></tr></thead><tbody>
{% for c in shop.customers %}<tr><td>{{ c.id }}</td><td>{{ c.name }}</td><td>{{ c.email or "" }}</td>
<td>{{ c.phone or "" }}</td><td>{{ c.email_consent or "" }}</td><td>{{ c.sms_consent or "" }}</td>
<td>{{ c.tags|join(", ") }}</td><td>{{ c.updated_at }}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no customers yet</td></tr>{% endfor %}
</tbody></table>{% endfor %}
<script>setTimeout(function(){location.reload()},2000)</script>
</body></html>"""


def create_devstore(store: DevStore) -> Flask:
    from app.platforms.devstore import shopify_api
    from app.platforms.devstore import shopify_oauth
    from app.platforms.devstore import shopline_api

    app = Flask(__name__)
    app.extensions["devstore"] = store
    app.register_blueprint(shopify_api.bp)
    app.register_blueprint(shopify_oauth.bp)
    app.register_blueprint(shopline_api.bp)

    @app.get("/devstore/customers")
    def customers_page() -> Any:
        """Every shop's customers, as the store's admin would list them."""
        listing = []
        for platform, module in (("shopify", shopify_api), ("shopline", shopline_api)):
            for shop_id, domain in store.shop_domains(platform):
                listing.append(
                    {
                        "platform": platform,
                        "domain": domain,
                        "customers": module.list_customers(store, shop_id),
                    }
                )
        if request.accept_mimetypes.best == "application/json":
            return jsonify({"shops": listing})
        return render_template_string(CUSTOMERS_PAGE, shops=listing)

    @app.route("/devstore/faults", methods=["GET", "POST"])
    def faults() -> Any:
        """Read or set the fault rates: {"error", "throttle", "timeout", "lost_answer", "timeout_seconds"}."""
        if request.method == "POST":
            body = request.get_json(silent=True) or {}
            allowed = {"error", "throttle", "timeout", "lost_answer", "timeout_seconds"}
            store.faults.configure(**{k: float(v) for k, v in body.items() if k in allowed})
        return jsonify({"plan": store.faults.plan.__dict__, "counts": store.faults.counts})

    return app
