# popsync: one image for the web processes and the background worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/popsync

RUN useradd --system --create-home --home-dir /home/popsync popsync

# The same install step as the README's: the package and its console script.
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN pip install .

USER popsync
ENV POPSYNC_INSTANCE_PATH=/home/popsync/instance
EXPOSE 8000

# Migrations are a release step, run once per deploy: `docker run … popsync db upgrade`.
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["popsync", "serve", "--host", "0.0.0.0", "--port", "8000"]
