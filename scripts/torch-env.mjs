// The torch environments the package manages in the user's cache: one venv per torch build,
// `$XDG_CACHE_HOME/resnet-ts/torch-<version>-<cpu|cuXY>` (default ~/.cache/resnet-ts/...), made by
// `resnet-ts setup` (CPU) or `resnet-ts setup --cuda`, found by scripts/libtorch.mjs, reused when present.
//
// pip installs torch with --no-deps and names what libtorch needs itself: the CUDA wheel's own
// requirements include packages (triton, cuda-bindings) that libtorch never loads and that local
// wheel mirrors may not hold.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The torch builds setup installs: the CPU default and the CUDA one (`--cuda`). */
export const TORCH_BUILDS = {
  cpu: { version: '2.13.0', tag: 'cpu', spec: 'torch==2.13.0+cpu' },
  cuda: { version: '2.14.1', tag: 'cu130', spec: 'torch==2.14.1' },
};

// The Python side of torch (never imported by libtorch, but `import torch` in the env should work).
const PURE_DEPS = ['filelock', 'typing-extensions', 'sympy', 'mpmath', 'networkx', 'jinja2', 'markupsafe', 'fsspec'];

// The CUDA 13 libraries libtorch_cuda links, and the headers (cuda-crt, cuda-cccl) its c10/cuda headers include.
export const NVIDIA_PACKAGES = [
  'nvidia-cuda-runtime', 'nvidia-cublas', 'nvidia-cudnn-cu13', 'nvidia-cufft', 'nvidia-cufile', 'nvidia-curand',
  'nvidia-cusolver', 'nvidia-cusparse', 'nvidia-cusparselt-cu13', 'nvidia-nccl-cu13', 'nvidia-nvshmem-cu13',
  'nvidia-nvjitlink', 'nvidia-cuda-nvrtc', 'nvidia-cuda-cupti', 'nvidia-nvtx', 'nvidia-cuda-crt', 'nvidia-cuda-cccl',
];

const COMPLETE = '.resnet-ts-complete';

/** The package's cache folder (XDG_CACHE_HOME honoured). */
export function cacheRoot() {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'resnet-ts');
}

/** The folder of the managed env for a build (`cpu` or `cuda`). */
export function envDir(kind) {
  const b = TORCH_BUILDS[kind];
  return join(cacheRoot(), `torch-${b.version}-${b.tag}`);
}

/** The torch package folder inside a venv, or null. */
export function torchInVenv(venv) {
  const lib = join(venv, 'lib');
  for (const d of existsSync(lib) ? readdirSync(lib) : []) {
    const p = join(lib, d, 'site-packages', 'torch');
    if (existsSync(join(p, 'include', 'ATen', 'ATen.h'))) return p;
  }
  return null;
}

/** The completed managed envs, the one `setup` selected last first, then newest first. */
export function managedEnvs() {
  const root = cacheRoot();
  if (!existsSync(root)) return [];
  const envs = readdirSync(root)
    .filter((d) => d.startsWith('torch-') && existsSync(join(root, d, COMPLETE)))
    .map((d) => join(root, d))
    .sort((a, b) => statSync(join(b, COMPLETE)).mtimeMs - statSync(join(a, COMPLETE)).mtimeMs);
  const selected = join(root, 'selected');
  const pick = existsSync(selected) ? join(root, readFileSync(selected, 'utf8').trim()) : null;
  return pick && envs.includes(pick) ? [pick, ...envs.filter((e) => e !== pick)] : envs;
}

/** Makes `kind`'s env the one discovery prefers (what `resnet-ts setup` chose last). */
export function selectEnv(kind) {
  mkdirSync(cacheRoot(), { recursive: true });
  writeFileSync(join(cacheRoot(), 'selected'), `torch-${TORCH_BUILDS[kind].version}-${TORCH_BUILDS[kind].tag}\n`);
}

// Index arguments for pip. When every index pip is configured with is local (file://, as on machines
// whose pip reaches no public index), only those are used: each package pip cannot find on an
// unreachable index costs minutes of retries. Otherwise the PyTorch index for the build comes first.
function pipIndexArgs(python, tag) {
  if (process.env.RESNET_TS_PIP_ARGS) return process.env.RESNET_TS_PIP_ARGS.split(/\s+/).filter(Boolean);
  let config = '';
  try {
    config = execFileSync(python, ['-m', 'pip', 'config', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    // pip without a config command: fall through to the public indexes
  }
  const urls = [];
  for (const m of config.matchAll(/^\S*\.(index-url|extra-index-url)='([^']*)'$/gm)) urls.push(...m[2].split(/\s+/).filter(Boolean));
  if (urls.length && urls.every((u) => u.startsWith('file:'))) {
    return ['--index-url', urls[0], ...urls.slice(1).flatMap((u) => ['--extra-index-url', u])];
  }
  if (urls.length) return [];
  return ['--index-url', `https://download.pytorch.org/whl/${tag}`, '--extra-index-url', 'https://pypi.org/simple'];
}

function run(cmd, args, log) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 3).join(' ')} ... failed (exit ${r.status ?? r.signal})`);
}

// One setup at a time per env (two projects, or two worktrees, may run it together).
function withLock(dir, fn, log) {
  mkdirSync(cacheRoot(), { recursive: true });
  const lock = `${dir}.lock`;
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      writeFileSync(lock, String(process.pid));
      break;
    } catch {
      const pid = Number(readFileSync(lock, 'utf8') || 0);
      let alive = false;
      try { alive = pid > 0 && process.kill(pid, 0); } catch { alive = false; }
      if (!alive) { rmSync(lock, { force: true }); continue; }
      if (Date.now() > deadline) throw new Error(`${lock} is held by process ${pid} for 30 minutes`);
      log(`waiting for process ${pid} (setting up ${dir})`);
      spawnSync('sleep', ['5']);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/**
 * The managed env for `kind` ('cpu' | 'cuda'), created with pip when missing; returns its torch folder.
 * A finished env is marked complete and never touched again; an unfinished one is removed and redone.
 */
export function ensureTorchEnv(kind, { python = process.env.PYTHON || 'python3', log = (m) => console.error(`[setup] ${m}`) } = {}) {
  const dir = envDir(kind);
  const done = () => existsSync(join(dir, COMPLETE)) && torchInVenv(dir);
  if (done()) return torchInVenv(dir);
  return withLock(dir, () => {
    if (done()) return torchInVenv(dir);
    const b = TORCH_BUILDS[kind];
    log(`creating ${dir} (torch ${b.version}, ${b.tag}; about ${kind === 'cuda' ? '4.5 GB, a few minutes' : '1 GB, a minute'})`);
    rmSync(dir, { recursive: true, force: true });
    try {
      run(python, ['-m', 'venv', dir], log);
    } catch (e) {
      throw new Error(`${e.message}\n  ${python} needs the venv module (Debian: sudo apt-get install python3-venv), or set PYTHON to another Python 3`);
    }
    const py = join(dir, 'bin', 'python');
    const pkgs = [b.spec, ...PURE_DEPS, ...(kind === 'cuda' ? NVIDIA_PACKAGES : [])];
    run(py, ['-m', 'pip', 'install', '-qq', '--no-deps', '--no-input', '--progress-bar', 'off', ...pipIndexArgs(py, b.tag), ...pkgs], log);
    const torch = torchInVenv(dir);
    if (!torch) throw new Error(`pip finished but ${dir} holds no torch with C++ headers`);
    writeFileSync(join(dir, COMPLETE), `${new Date().toISOString()} ${pkgs.join(' ')}\n`);
    return torch;
  }, log);
}

// `node scripts/torch-env.mjs cpu|cuda`: makes (or finds) that env and prints its torch folder.
if (process.argv[1] && realpathSync(resolve(process.argv[1])) === realpathSync(fileURLToPath(import.meta.url))) {
  const kind = process.argv[2];
  if (!(kind in TORCH_BUILDS)) {
    console.error('usage: node scripts/torch-env.mjs cpu|cuda');
    process.exit(2);
  }
  try {
    console.log(ensureTorchEnv(kind));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
