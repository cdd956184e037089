# syntax=docker/dockerfile:1
# One image for every herald binary; each Kubernetes Deployment picks its
# console script via `command`. Build from the repo root: docker build -t herald .

# The web console herald-gateway serves (web/console), built from the npm registry's packages at the versions
# web/package-lock.json fixes: the runtime image has no Node.js.
FROM node:22-slim AS web
WORKDIR /src
COPY web/package.json web/package-lock.json web/
RUN npm ci --prefix web --ignore-scripts --no-audit --no-fund
COPY protos protos
COPY web web
RUN npm run --prefix web build

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A venv is copied whole into the runtime stage, leaving pip's build
# dependencies and the source tree behind.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
# Optional extras, comma-separated: `--build-arg HERALD_EXTRAS=parquet` for ExportEvents in Parquet (pyarrow). The
# bundled nats-server (extra `nats`) is for `make up` and the tests: a cluster runs NATS as a service of its own.
ARG HERALD_EXTRAS=""
COPY --from=web /src/web/dist/console herald/services/gateway/console
RUN pip install -c requirements.lock ./clients/python ".${HERALD_EXTRAS:+[$HERALD_EXTRAS]}"

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin herald
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Numeric uid so runAsNonRoot can be verified by the kubelet without /etc/passwd.
USER 10001:10001
EXPOSE 50051 50052 50053 50054 50063 8080
# Exec form: the binary is PID 1 and receives SIGTERM directly (it installs its
# own handler for graceful shutdown).
CMD ["herald-intake"]
