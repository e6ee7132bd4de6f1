#!/usr/bin/env bash
# Idempotent set-up for resnet-ts on Debian: system packages, libtorch, npm deps, the addon.
# A second run does nothing but check (a few seconds).
#   - Debian packages (dataset-fashion-mnist, python3-torchvision as the parity oracle, libgloo-dev,
#     chromium for report tests): installed with apt when missing and running as root; otherwise
#     the command to run is printed.
#   - libtorch: when scripts/libtorch.mjs finds none, a project-local .venv gets pip's torch==2.13.0+cpu.
#   - npm ci when node_modules is missing or stale; node-gyp builds the addon when cpp/ changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "[setup] $*" >&2; }

# ---- Debian packages ----
missing=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
/usr/bin/python3 -c 'import torchvision' >/dev/null 2>&1 || missing+=(python3-torchvision)
[ -e /usr/include/gloo/allreduce.h ] || missing+=(libgloo-dev)
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
if ! node scripts/libtorch.mjs --describe >/dev/null 2>&1; then
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
if [ ! -e "$addon" ] || [ -n "$(find cpp binding.gyp scripts/libtorch.mjs -newer "$addon" 2>/dev/null | head -1)" ]; then
  log "building the addon ($(node scripts/libtorch.mjs --describe))"
  if [ -e build/Makefile ] && [ ! binding.gyp -nt build/Makefile ]; then
    npx --no-install node-gyp build -j "$(nproc)" >/dev/null
  else
    npx --no-install node-gyp rebuild -j "$(nproc)" >/dev/null
  fi
  touch "$addon"
fi
