# syntax=docker/dockerfile:1.7
# One Dockerfile for the five Tokenmesh services, parameterised by SERVICE (gateway, guard, router, inference, cost):
#   docker build --build-arg SERVICE=router -t tokenmesh/router .
# NVIDIA GPU variant of inference (CUDA runtime base + node-llama-cpp's CUDA build):
#   docker build --build-arg SERVICE=inference --target inference-gpu -t tokenmesh/inference-gpu .
# Stages: build (all deps, turbo build incl. buf codegen, test models) -> prod (production deps of SERVICE only,
# assembled in the workspace layout) -> runtime (slim, non-root) or inference-gpu (CUDA runtime, non-root).
# deploy/README.md documents the images; deploy/scripts/validate.sh checks this file's invariants.

ARG NODE_VERSION=20.19
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
ENV TURBO_TELEMETRY_DISABLED=1 CI=true
COPY . .
# .npmrc (omit=optional) keeps node-llama-cpp's ~725 MB of GPU builds out; the platform binaries the build needs are
# listed explicitly in package.json.
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
RUN npm run build
# The default catalog's local models (tiny GGUF files with random weights) are written here, at build time: they are
# deterministic and small (~2 MB), so every replica starts without a download or an initContainer. Real models are
# mounted at /app/models or fetched from hf: sources into INFERENCE_MODELS_DIR (see deploy/README.md).
RUN node packages/testing/dist/models/make-test-models.js models

FROM build AS prod
ARG SERVICE
RUN test -n "${SERVICE}" && test -f "services/${SERVICE}/package.json" \
  || { echo "set --build-arg SERVICE=gateway|guard|router|inference|cost" >&2; exit 1; }
# Production dependencies of this service only (its workspace deps resolve through the root node_modules, so the
# workspace layout is kept), then of each workspace package only package.json, dist and its nested node_modules
# (versions npm could not hoist). --omit on the command line replaces .npmrc's list, so optional is repeated
# (without it every node-llama-cpp GPU build comes back).
RUN --mount=type=cache,target=/root/.npm rm -rf node_modules \
  && npm ci --omit=dev --omit=optional --no-audit --no-fund --workspace "services/${SERVICE}" \
  && mkdir -p /out \
  && cp package.json package-lock.json .npmrc /out/ \
  && cp -r node_modules config /out/ \
  && if [ "${SERVICE}" = inference ]; then cp -r models /out/; fi \
  && for dir in proto packages/* services/${SERVICE}; do \
       mkdir -p "/out/${dir}" && cp "${dir}/package.json" "/out/${dir}/" \
       && for sub in dist node_modules; do \
            if [ -d "${dir}/${sub}" ]; then cp -r "${dir}/${sub}" "/out/${dir}/"; fi; \
          done; \
     done \
  && cp deploy/docker/healthcheck.mjs /out/healthcheck.mjs \
  && rm -rf /out/packages/testing

# node-llama-cpp's CUDA build is an optional dependency that .npmrc omits: install exactly the version matching
# node-llama-cpp into the production tree.
FROM prod AS prod-gpu
RUN --mount=type=cache,target=/root/.npm version="$(node -p "require('./node_modules/node-llama-cpp/package.json').version")" \
  && mkdir /tmp/cuda && cd /tmp/cuda \
  && npm init -y >/dev/null \
  && npm install --no-save --no-audit --no-fund --include=optional "@node-llama-cpp/linux-x64-cuda@${version}" \
  && cp -r node_modules/@node-llama-cpp/linux-x64-cuda /out/node_modules/@node-llama-cpp/

FROM node:${NODE_VERSION}-bookworm-slim AS node

# GPU inference for NVIDIA hosts: the CUDA runtime libraries (cudart, cuBLAS) the prebuilt CUDA binary links to,
# with Node copied from the official image. Run with the NVIDIA Container Toolkit (--gpus all, or the compose/k8s
# GPU overlays); INFERENCE_GPU=auto then picks CUDA and /readyz reports the device.
FROM ${CUDA_IMAGE} AS inference-gpu
ENV NODE_ENV=production \
    TOKENMESH_SERVICE=inference \
    MESH_CONFIG=/app/config/mesh.yaml \
    INFERENCE_GPU=auto
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/sh --create-home node
COPY --from=prod-gpu --chown=root:root /out /app
WORKDIR /app/services/inference
USER node
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["node", "--import", "@tokenmesh/telemetry/register", "dist/main.js"]

# Default target (last stage): a service on the slim Node image.
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ARG SERVICE
ENV NODE_ENV=production \
    TOKENMESH_SERVICE=${SERVICE} \
    MESH_CONFIG=/app/config/mesh.yaml
WORKDIR /app
COPY --from=prod --chown=root:root /out /app
WORKDIR /app/services/${SERVICE}
# The `node` user (uid 1000) of the base image; nothing under /app is writable by it.
USER node
# Liveness of the process: GET /healthz on the service's ops port (the gateway's HTTP port), read from the same env
# variables the service reads.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
# node is PID 1 on purpose: the service handles SIGTERM itself (drain within SHUTDOWN_TIMEOUT_MS, then exit).
ENTRYPOINT ["node", "--import", "@tokenmesh/telemetry/register", "dist/main.js"]
