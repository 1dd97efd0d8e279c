# syntax=docker/dockerfile:1
#
# portkey-user-proxy: docker build -t portkey-user-proxy .
#
# The builder installs the package and its runtime dependencies (pyproject's [project].dependencies,
# never the test extra) into a virtualenv; the runtime stage copies only that virtualenv.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build

# Dependencies get a layer of their own, rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -r requirements.txt

COPY README.md ./
COPY src ./src
RUN pip install --no-deps .


FROM python:${PYTHON_VERSION}-slim AS runtime

LABEL org.opencontainers.image.title="portkey-user-proxy" \
      org.opencontainers.image.description="Sidecar reverse proxy that attributes LibreChat requests to their users in Portkey." \
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
