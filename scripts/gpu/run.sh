#!/usr/bin/env bash
# Second half of `npm run test:gpu`: one run on the GPU machine (../shared/GPU.md), at most ~9 minutes.
# Needs the working tree plus .gpu/ from scripts/gpu/prepare.mjs; uses the machine's Python torch (or
# LIBTORCH) and its CUDA headers. Builds the addon into build-gpu/, runs test/gpu/checks.ts (compiled),
# and writes one JSON and one log:  $OUT/gpu.json  $OUT/gpu.log   (OUT defaults to .gpu/out).
# Without a GPU it still runs: RESNET_TS_GPU_DEVICE=cpu is set and the CUDA-only checks report skipped.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
out="${OUT:-$repo/.gpu/out}"
mkdir -p "$out"
log="$out/gpu.log"
: >"$log"
exec > >(tee -a "$log") 2>&1
budget=${RESNET_TS_GPU_BUDGET:-540}
deadline=$((SECONDS + budget))
left() { echo $((deadline - SECONDS)); }
step() { echo "[test:gpu $(date -u +%H:%M:%S) +${SECONDS}s] $*"; }
fail() {
  step "FAILED: $*"
  printf '{"ok": false, "stage": "%s", "error": "%s", "log": "%s"}\n' "$1" "${2:-see the log}" "$log" >"$out/gpu.json"
  exit 1
}

# ---- Node: the one on PATH when it is 20+, else the prepared binary ----
if [ -e .gpu/node.tar.xz ] && ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
  nodeprefix=${TMPDIR:-/tmp}/resnet-ts-node
  if [ ! -x "$nodeprefix/bin/node" ]; then
    step "unpacking .gpu/node.tar.xz"
    mkdir -p "$nodeprefix" && tar -xJf .gpu/node.tar.xz -C "$nodeprefix" || fail node "cannot unpack .gpu/node.tar.xz"
  fi
  export PATH="$nodeprefix/bin:$PATH"
fi
command -v node >/dev/null || fail node "no node on PATH and no .gpu/node.tar.xz (run: node scripts/gpu/prepare.mjs)"
[ -e .gpu/dist/test/gpu/checks.js ] || fail prepare "no .gpu/dist (run: node scripts/gpu/prepare.mjs here, then carry .gpu)"
export NODE_PATH="$repo/.gpu/node_modules${NODE_PATH:+:$NODE_PATH}"
[ -e .gpu/node_modules/node-gyp/bin/node-gyp.js ] && export npm_config_node_gyp="$repo/.gpu/node_modules/node-gyp/bin/node-gyp.js"
step "node $(node --version) at $(command -v node)"

# ---- torch and the device ----
if [ -z "${LIBTORCH:-}" ]; then
  LIBTORCH=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null) || fail torch "python3 has no torch; set LIBTORCH"
fi
export LIBTORCH
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  step "no GPU here: the checks run on the CPU (RESNET_TS_GPU_DEVICE=cpu) and the CUDA-only ones are skipped"
  export RESNET_TS_GPU_DEVICE=${RESNET_TS_GPU_DEVICE:-cpu}
fi
lscpu | grep -m1 'Model name' || true

# ---- build ----
step "building the addon into build-gpu/ ($(node scripts/libtorch.mjs --describe 2>&1))"
t0=$SECONDS
timeout $(($(left) - 120)) node scripts/build-addon.mjs --out build-gpu --libtorch "$LIBTORCH" || fail build "the addon did not build (log above)"
addon=$repo/build-gpu/build/Release/resnet_ts.node
[ "$(uname -s)" = Linux ] && readelf -d "$addon" | grep -E 'NEEDED.*(torch|c10)'
step "built in $((SECONDS - t0)) s"

# ---- checks ----
export RESNET_TS_ADDON=$addon
step "running the CUDA checks ($(left) s left)"
timeout $(($(left) - 10)) node .gpu/dist/test/gpu/checks.js --json "$out/gpu.json" --deadline $(($(date +%s) * 1000 + ($(left) - 40) * 1000))
rc=$?
[ -s "$out/gpu.json" ] || fail checks "the checks wrote no JSON (exit $rc)"
step "done (exit $rc): $out/gpu.json, $log"
exit $rc
