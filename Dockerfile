# popsync: one image for the web processes and the background worker (docs/deploy.md).
#
#   docker build -t popsync .
#   docker run --rm --env-file popsync.env popsync popsync db upgrade   # the release step, once per deploy
#   docker run -d --env-file popsync.env -p 8000:8000 popsync            # gunicorn + the background worker
#
# The web command never migrates: with several replicas starting at once, each would race to upgrade the
# schema, and a failed migration would crash-loop the web instead of stopping the release.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/popsync

# A fixed numeric id, so an orchestrator's "run as non-root" check can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 popsync \
    && useradd --system --uid 10001 --gid popsync --create-home --home-dir /home/popsync popsync

# The README's install step, on the files it needs: the package (with its templates, static files and the
# trimmed Shopify schema) and the migrations, which `popsync db upgrade` finds beside the package.
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN pip install -e .

USER 10001:10001
# The instance folder (SQLite file, uploads) in the user's home; PostgreSQL is what a deployment uses.
# The metrics directory is emptied by `popsync serve` at start (app/gunicorn_conf.py).
ENV POPSYNC_INSTANCE_PATH=/home/popsync/instance \
    PROMETHEUS_MULTIPROC_DIR=/tmp/popsync-metrics
EXPOSE 8000

# gunicorn finishes the requests in flight on SIGTERM for up to 20 s: stop with `docker stop -t 30`.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["popsync", "serve", "--host", "0.0.0.0", "--port", "8000"]
