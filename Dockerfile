# syntax=docker/dockerfile:1.7@sha256:a57df69d0ea827fb7266491f2813635de6f17269be881f696fbfdf2d83dda33e
# The service as a container: slim Debian Python, the locked dependency set checked against its
# hashes, a non-root user, a health check. Build from the project directory:
#   docker build -t calciphylaxis-cds .                      (make image)
# Run several of these behind a load balancer with deploy/compose.yaml, or on Kubernetes with
# deploy/kubernetes/ (deploy/README.md).
#
# Base images are pinned by digest (the multi-platform index of the official image, as recorded in
# github.com/docker-library/repo-info): a rebuild gets the same base until the digest is changed on
# purpose. To take a newer base (security updates), look the digest up and replace it:
#   docker buildx imagetools inspect python:3.11-slim-bookworm     (the "Digest:" line)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

FROM ${PYTHON_IMAGE} AS build
# Behind a hospital's network:
# - PIP_INDEX_URL: a private package index or PyPI mirror (the build stage only: it is not in the
#   final image). For an index that needs credentials, give a pip configuration file as a build
#   secret instead of a URL with a password: docker build --secret id=pip.conf,src=$HOME/.config/pip/pip.conf
# - CA_BUNDLE: a PEM file in the build context (e.g. deploy/certs/proxy-ca.pem) holding the CA
#   certificate of a TLS-intercepting proxy; pip then trusts it beside the system CAs.
#   docker build --build-arg PIP_INDEX_URL=https://nexus.hospital.example/repository/pypi/simple \
#                --build-arg CA_BUNDLE=deploy/certs/proxy-ca.pem -t calciphylaxis-cds .
ARG PIP_INDEX_URL=""
ARG CA_BUNDLE=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml requirements-runtime.lock README.md LICENSE ./
COPY cds_service ./cds_service
COPY cards ./cards
# Exactly the versions CI tested, each file checked against its hash (requirements-runtime.lock,
# written by `make lock`), into a virtual environment copied below. The project's own wheel is
# built with the base image's setuptools (pinned with the base), so nothing unhashed is fetched.
RUN --mount=type=bind,target=/context \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    set -eu; \
    if [ -z "${PIP_INDEX_URL}" ]; then unset PIP_INDEX_URL; fi; \
    if [ -n "${CA_BUNDLE}" ]; then \
      cat /etc/ssl/certs/ca-certificates.crt "/context/${CA_BUNDLE}" > /tmp/ca-bundle.pem; \
      export PIP_CERT=/tmp/ca-bundle.pem; \
    fi; \
    python -m venv /opt/venv; \
    /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements-runtime.lock; \
    python -m pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheel .; \
    /opt/venv/bin/pip install --no-deps --no-index /tmp/wheel/*.whl; \
    /opt/venv/bin/pip check; \
    /opt/venv/bin/python -c "import cds_service.http.app"; \
    rm -rf /tmp/wheel /tmp/ca-bundle.pem

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
# OCI annotations. VERSION follows pyproject.toml (a test keeps them equal); give the others when
# building a release: --build-arg REVISION=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%FT%TZ)
# --build-arg SOURCE_URL=<where the repository is published>
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="calciphylaxis-cds" \
      org.opencontainers.image.description="CDS Hooks 2.0 service: calciphylaxis decision support for dialysis care" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_DATA_HOME=/var/lib \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8080
RUN groupadd --system --gid 10001 cds \
 && useradd --system --uid 10001 --gid cds --home-dir /var/lib/calciphylaxis-cds --shell /usr/sbin/nologin cds \
 && mkdir -p /var/lib/calciphylaxis-cds/var \
 && chown -R cds:cds /var/lib/calciphylaxis-cds
COPY --from=build /opt/venv /opt/venv
# Example issuers files (docs/authentication.md); mount your own over /etc/calciphylaxis-cds/issuers.
COPY config/issuers /etc/calciphylaxis-cds/issuers
COPY LICENSE /usr/share/doc/calciphylaxis-cds/LICENSE
USER cds:cds
WORKDIR /var/lib/calciphylaxis-cds
# The embedded SQLite database by default (CDS_FEEDBACK_DB=var/feedback.sqlite3 under the data
# directory): a volume, so that feedback outlives the container. Unused with CDS_DATABASE_URL.
VOLUME ["/var/lib/calciphylaxis-cds/var"]
EXPOSE 8080
# Liveness: the process answers. (Readiness, GET /ready, is the load balancer's check.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CDS_PORT', '8080'), timeout=2)"]
# SIGTERM: stop accepting, finish the calls in progress, write out the served-card log, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["calciphylaxis-cds"]
CMD ["serve"]
