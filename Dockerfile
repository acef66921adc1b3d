# The remediator image: `docker build -t remediator .` at the repository root.
# The Helm chart (deploy/helm/remediator) mounts the config at /etc/remediator and the state
# volume at /var/lib/remediator, and runs this image as the user below with a read-only root
# filesystem.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && rm -rf /src \
    && groupadd --system --gid 10001 remediator \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/remediator \
       --shell /usr/sbin/nologin remediator \
    && mkdir -p /etc/remediator /var/lib/remediator \
    && chown remediator:remediator /var/lib/remediator

WORKDIR /var/lib/remediator
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 9095
ENTRYPOINT ["remediator", "serve", "--config", "/etc/remediator/remediator.yaml"]
# Listen on every interface of the container (the config's default is loopback). Kubernetes'
# `args` (the chart) replace this.
CMD ["--listen", "0.0.0.0:9095"]
