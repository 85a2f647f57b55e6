# syntax=docker/dockerfile:1
# The service as a container: slim Debian Python, the locked dependency set, a non-root user, a
# health check. Build from the project directory: `docker build -t calciphylaxis-cds .` (make image).
# Run several of these behind a load balancer with deploy/compose.yaml (deploy/README.md).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY cds_service ./cds_service
COPY cards ./cards
# Exactly the versions CI tested (requirements.lock), into a virtual environment copied below.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --constraint requirements.lock . \
 && /opt/venv/bin/python -c "import cds_service.http.app"

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_DATA_HOME=/var/lib \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8080
RUN groupadd --system --gid 10001 cds \
 && useradd --system --uid 10001 --gid cds --home-dir /var/lib/calciphylaxis-cds --shell /usr/sbin/nologin cds \
 && mkdir -p /var/lib/calciphylaxis-cds \
 && chown cds:cds /var/lib/calciphylaxis-cds
COPY --from=build /opt/venv /opt/venv
# Example issuers files (docs/authentication.md); mount your own over /etc/calciphylaxis-cds/issuers.
COPY config/issuers /etc/calciphylaxis-cds/issuers
USER cds:cds
WORKDIR /var/lib/calciphylaxis-cds
EXPOSE 8080
# Liveness: the process answers. (Readiness, GET /ready, is the load balancer's check.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CDS_PORT', '8080'), timeout=2)"]
# SIGTERM: stop accepting, finish the calls in progress, write out the served-card log, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["calciphylaxis-cds"]
CMD ["serve"]
