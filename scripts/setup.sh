#!/usr/bin/env bash
# Idempotent set-up for resnet-ts on Debian: system packages, libtorch, npm deps, the addon, dist/.
# A second run does nothing but check (a second or two).
#   - Debian packages (dataset-fashion-mnist, python3-torchvision as the parity oracle, libgloo-dev,
#     libdnnl-dev for planned convolutions, chromium for report tests): installed with apt when missing and running as root; otherwise
#     the command to run is printed.
#   - libtorch: when scripts/libtorch.mjs finds none, a project-local .venv gets pip's torch==2.13.0+cpu.
#   - npm ci when node_modules is missing or stale; the addon (scripts/build-addon.mjs: npm's node-gyp,
#     with the content-addressed build cache) when cpp/ changed; dist/ (npm run build:ts) when lib/ changed.
#   - --cuda: also the cached CUDA torch env (scripts/torch-env.mjs cuda) and the addon built against it
#     into build-cuda/ (what CI links on every commit; no GPU needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "[setup +${SECONDS}s] $*" >&2; }

# ---- Debian packages ----
missing=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
/usr/bin/python3 -c 'import torchvision' >/dev/null 2>&1 || missing+=(python3-torchvision)
[ -e /usr/include/gloo/allreduce.h ] || missing+=(libgloo-dev)
[ -e /usr/include/oneapi/dnnl/dnnl.hpp ] || missing+=(libdnnl-dev)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v g++ >/dev/null 2>&1 || missing+=(g++ make)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
  else
    log "missing Debian packages: ${missing[*]}"
    log "  run: sudo apt-get install -y ${missing[*]}"
  fi
fi

# ---- libtorch ----
# The package's cache envs are for installed copies; a checkout builds against LIBTORCH, .venv or a Python torch.
if ! node scripts/libtorch.mjs --describe 2>/dev/null | grep -qv ' from resnet-ts cache '; then
  py="${PYTHON:-python3}"
  log "no libtorch 2.x found; creating .venv with torch==2.13.0+cpu"
  rm -rf .venv
  # System site-packages give the venv's torch its Python dependencies where pip cannot reach PyPI.
  "$py" -m venv --system-site-packages .venv
  links=()
  [ -d /opt/wheels ] && links=(--find-links /opt/wheels)
  .venv/bin/python -m pip install -q "${links[@]}" --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu 2>/dev/null ||
    .venv/bin/python -m pip install -q --no-deps "${links[@]}" --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu
  node scripts/libtorch.mjs --describe >/dev/null || { log "torch installed but libtorch still not found"; exit 1; }
fi

# ---- npm dependencies (their install step builds the addon) ----
if [ ! -e node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  # onnxruntime-node (the bench's peer) would otherwise download CUDA libraries from outside npm.
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
fi

# ---- the addon ----
addon=build/Release/resnet_ts.node
if [ ! -e "$addon" ] || [ -n "$(find cpp binding.gyp scripts/libtorch.mjs scripts/build-addon.mjs -newer "$addon" 2>/dev/null | head -1)" ]; then
  node scripts/build-addon.mjs >/dev/null
  touch "$addon"
fi

# ---- dist/ (the compiled package; the npm scripts run the sources through tsx) ----
if [ ! -e dist/lib/index.js ] || [ -n "$(find lib scripts tsconfig.json tsconfig.build.json -newer dist/lib/index.js \( -name '*.ts' -o -name 'tsconfig*.json' \) 2>/dev/null | head -1)" ]; then
  node scripts/build-ts.mjs
  touch dist/lib/index.js
fi

# ---- the CUDA variant (--cuda; RESNET_TS_SKIP_CUDA=1 skips it where no CUDA torch can be installed) ----
if [ "${1:-}" = --cuda ] && [ "${RESNET_TS_SKIP_CUDA:-0}" != 1 ]; then
  torch=$(node scripts/torch-env.mjs cuda)
  node scripts/build-addon.mjs --out build-cuda --libtorch "$torch" >/dev/null
  log "CUDA variant ready: build-cuda/build/Release/resnet_ts.node"
fi
