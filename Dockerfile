# slack-responses-bot: one process serving Slack (HTTP or Socket Mode) and /healthz, /readyz,
# /metrics on $PORT. Build: docker build -t slack-responses-bot .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DATABASE_URL=sqlite+aiosqlite:////app/data/bot.db

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, from the pinned lock, so code changes reuse this layer.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

# The source is run in place from /app (not installed into site-packages): storage finds
# migrations/ relative to the repository root, which is /app here. .dockerignore keeps tests,
# .venv, data and secrets out.
COPY . .
RUN mkdir -p /app/data && chown app:app /app/data

USER 10001:10001

EXPOSE 3000

# The slim image has no curl: ask /healthz with Python's standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

# Applies pending migrations, then serves; SIGTERM lets answers in flight finish (30 s grace).
CMD ["python", "-m", "bot"]
