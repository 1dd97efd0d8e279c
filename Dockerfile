# syntax=docker/dockerfile:1
#
# portkey-user-proxy: docker build -t portkey-user-proxy .
#
# Every package comes from the lock files, pinned and checked against their hashes
# (./scripts/lock refreshes them), so two builds of one commit install the same bytes. The builder
# installs the runtime dependencies and the project into a virtualenv; the runtime stage copies only
# that virtualenv.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build

# Runtime dependencies get a layer of their own, rebuilt only when the lock changes. Wheels only:
# nothing is compiled, on either architecture. --require-hashes also refuses any dependency the
# lock misses, instead of fetching it unpinned.
COPY requirements.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.txt

# The build backend, locked too, goes into the builder's own Python, never into the shipped venv;
# without build isolation pip fetches no unpinned backend to build the project's wheel.
COPY requirements-build.txt ./
RUN pip install --require-hashes --only-binary=:all: -r requirements-build.txt

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check


FROM python:${PYTHON_VERSION}-slim AS runtime

# The release workflow passes the tag's version and the commit; a local build describes this checkout.
ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="portkey-user-proxy" \
      org.opencontainers.image.description="Sidecar reverse proxy that attributes LibreChat requests to their users in Portkey." \
      org.opencontainers.image.source="https://github.com/portkey-user-proxy/portkey-user-proxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEB_CONCURRENCY=1

# A numeric user, so Kubernetes' runAsNonRoot can verify it without a runAsUser of its own.
RUN groupadd --system --gid 10001 proxy \
    && useradd --system --uid 10001 --gid proxy --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin proxy

COPY --from=builder /opt/venv /opt/venv

# The process reads an optional .env from its working directory; the image ships none.
WORKDIR /app
USER 10001:10001

EXPOSE 8080

# Liveness only: /readyz would mark the container unhealthy whenever MongoDB is briefly away.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# Exec form: the server is PID 1 and gets SIGTERM itself, then drains open streams for
# SHUTDOWN_GRACE_SECONDS. Give `docker stop` / Compose / Kubernetes more than that to wait.
STOPSIGNAL SIGTERM
ENTRYPOINT ["portkey-user-proxy"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
