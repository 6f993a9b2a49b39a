# The image of fieldsync's workers and scheduler (see docker-compose.yml and docs/production.md).
#
#   docker build -t fieldsync:latest .
#   docker run --rm -e FIELDSYNC_COUCH_URL=http://admin:PASSWORD@couchdb:5984 fieldsync:latest status
#
# Production talks to Apache CouchDB 3, so the image holds neither Node.js nor the embedded server (server/),
# nor the dev extra (pytest, ruff, mypy): only the `fieldsync` distribution and its runtime dependencies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Build from a scratch copy of the sources, then remove it: what runs is the installed package only.
WORKDIR /tmp/fieldsync
COPY pyproject.toml README.md ./
COPY workers/ workers/
COPY validators/ validators/
COPY summarizer/ summarizer/
COPY couch_design/ couch_design/
COPY demo/ demo/
RUN pip install --no-cache-dir . \
    && cd / && rm -rf /tmp/fieldsync \
    && fieldsync --help >/dev/null

# A non-root user with a writable home (the data directory, FIELDSYNC_DATA_DIR, lives there).
RUN groupadd --system --gid 10001 fieldsync \
    && useradd --system --uid 10001 --gid fieldsync --create-home --home-dir /home/fieldsync \
       --shell /usr/sbin/nologin fieldsync
USER fieldsync
WORKDIR /home/fieldsync

# Logs are JSON lines on stderr (docker compose logs); FIELDSYNC_COUCH_URL comes from the environment at run time.
ENV FIELDSYNC_DATA_DIR=/home/fieldsync/.fieldsync \
    FIELDSYNC_LOG_FORMAT=json

ENTRYPOINT ["fieldsync"]
CMD ["work"]
