#!/usr/bin/env node
// Finds libtorch for the build, in a fixed order (as tch-rs does):
//   1. LIBTORCH=<prefix>        an unpacked libtorch zip or any prefix with include/ and lib/ (set but
//                               wrong is an error, never silently skipped)
//   2. the project's .venv torch (development checkouts)
//   3. a Python torch           ($PYTHON, python3, /usr/bin/python3)
//   4. the env `resnet-ts setup` made in the user's cache (scripts/torch-env.mjs)
// Torch < 2.0 is refused: Debian's python3-torch 1.13 is the test oracle, never linked.
// For a CUDA libtorch the CUDA headers its c10/cuda headers include come from, in order: CUDA_HOME /
// CUDA_PATH, the pip `nvidia` packages beside that torch, the toolkit's standard prefixes, nvcc's prefix.
//
// Usage: node scripts/libtorch.mjs [--json | --describe | --include | --libdirs | --libs | --defines | --cflags | --ldflags | --cuda]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, symlinkSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot, managedEnvs, torchInVenv } from './torch-env.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function readVersion(prefix, inc) {
  for (const f of [join(prefix, 'build-version'), join(prefix, 'version.py')]) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const m = text.match(/__version__\s*=\s*'([^']+)'/) ?? text.match(/^(\d+\.\d+\.\d+\S*)/m);
    if (m) return m[1];
  }
  const h = join(inc, 'torch', 'csrc', 'api', 'include', 'torch', 'version.h');
  if (!existsSync(h)) return null;
  const t = readFileSync(h, 'utf8');
  const g = (k) => t.match(new RegExp(`#define TORCH_VERSION_${k} (\\d+)`))?.[1];
  return g('MAJOR') ? `${g('MAJOR')}.${g('MINOR')}.${g('PATCH')}` : null;
}

// The CUDA version torch was built for: version.py's `cuda = '13.0'`, else the +cuXYZ of its version.
function torchCudaVersion(prefix, version) {
  const py = join(prefix, 'version.py');
  const m = existsSync(py) && readFileSync(py, 'utf8').match(/^cuda\b[^=]*=\s*'([\d.]+)'/m);
  if (m) return m[1];
  const t = String(version ?? '').match(/\+cu(\d+)(\d)$/);
  return t ? `${t[1]}.${t[2]}` : null;
}

function fromPrefix(prefix, how) {
  const inc = join(prefix, 'include');
  const lib = join(prefix, 'lib');
  if (!existsSync(join(inc, 'ATen', 'ATen.h')) || !existsSync(lib)) return null;
  const version = readVersion(prefix, inc);
  const libs = readdirSync(lib);
  const cuda = libs.some((f) => f.startsWith('libtorch_cuda.'));
  // libc10's symbols carry `__cxx11` exactly when it was built with the C++11 ABI.
  const c10 = join(lib, 'libc10.so');
  const abi = existsSync(c10) ? (readFileSync(c10).includes('__cxx11') ? 1 : 0) : 1;
  return {
    how,
    prefix,
    version,
    abi,
    cuda,
    cudaVersion: cuda ? torchCudaVersion(prefix, version) : null,
    includeDirs: [inc, join(inc, 'torch', 'csrc', 'api', 'include')],
    libDirs: [lib],
  };
}

function pythonTorch(python, how) {
  try {
    const out = execFileSync(
      python,
      ['-c', 'import os, torch\nprint(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60000 },
    ).trim().split('\n');
    const [prefix, version, abi] = out.slice(-3);
    const found = fromPrefix(prefix, `${how} (${python})`);
    if (!found) return null;
    return { ...found, version, abi: Number(abi), python };
  } catch {
    return null;
  }
}

// A venv's torch read from its files (version.py, libc10's ABI): no `import torch`, which takes seconds.
function venvTorch(venv, how) {
  const py = join(venv, 'bin', 'python');
  const prefix = existsSync(py) && torchInVenv(venv);
  const found = prefix && fromPrefix(prefix, how);
  return found ? { ...found, python: py } : null;
}

// The system oneDNN (Debian's libdnnl-dev) for cpp/dnnl_conv.cc's planned convolutions: libtorch bundles one
// but exports none of its API. Linked after libtorch, so the one libgomp.so.1 loaded is libtorch's.
// libtorch ships oneDNN 3.x headers of its own (for a library it does not export), found first on its include
// path; GCC ignores -I and -iquote for /usr/include itself, so the system's headers come in through a folder
// holding only a link to their `oneapi/`, searched first for quoted includes (cpp/dnnl_conv.cc's and dnnl.hpp's).
function dnnlHeaders() {
  return ['/usr/include', '/usr/local/include'].find((d) => existsSync(join(d, 'oneapi', 'dnnl', 'dnnl.hpp'))) ?? null;
}

// <cache>/dnnl-include/<version>/oneapi -> <system include>/oneapi, made once; `headers` is dnnlHeaders()'s folder.
function dnnlShim(headers) {
  const dir = join(cacheRoot(), 'dnnl-include', `${dnnlVersion(headers)}-${headers.replace(/\//g, '_')}`);
  if (!existsSync(join(dir, 'oneapi', 'dnnl', 'dnnl.hpp'))) {
    mkdirSync(dir, { recursive: true });
    const tmp = join(dir, `oneapi.${process.pid}`);
    symlinkSync(join(headers, 'oneapi'), tmp);
    renameSync(tmp, join(dir, 'oneapi'));
  }
  return dir;
}

// The system oneDNN's version (part of the build key: the addon links its soname), or null without its headers.
function dnnlVersion(headers) {
  if (!headers) return null;
  const h = readFileSync(join(headers, 'oneapi', 'dnnl', 'dnnl_version.h'), 'utf8');
  return ['MAJOR', 'MINOR', 'PATCH'].map((k) => h.match(new RegExp(`#define DNNL_VERSION_${k} (\\d+)`))?.[1] ?? '?').join('.');
}

// c10d's Gloo headers include gloo's own, which the pip wheel does not ship (Debian's libgloo-dev does).
function glooHeaders(t) {
  return [...t.includeDirs, '/usr/include', '/usr/local/include'].some((d) => existsSync(join(d, 'gloo', 'allreduce.h')));
}

// ProcessGroupNCCL for a CUDA libtorch: its header (in the wheels) and nccl.h (pip nvidia-nccl, or a toolkit's).
function ncclHeaders(t, include) {
  return t.cuda && t.includeDirs.some((d) => existsSync(join(d, 'torch', 'csrc', 'distributed', 'c10d', 'ProcessGroupNCCL.hpp'))) &&
    include.some((d) => existsSync(join(d, 'nccl.h')));
}

function major(version) {
  return Number(String(version ?? '0').split('.')[0]);
}

function cudartVersion(includeDir) {
  const h = join(includeDir, 'cuda_runtime_api.h');
  const m = existsSync(h) && readFileSync(h, 'utf8').match(/#define CUDART_VERSION\s+(\d+)/);
  return m ? `${Math.floor(Number(m[1]) / 1000)}.${(Number(m[1]) % 1000) / 10}` : null;
}

// The toolkit nvcc belongs to (nvcc may be a wrapper script, so ask it rather than follow links).
function nvccPrefix(env) {
  const nvcc = (env.PATH ?? '').split(delimiter).map((d) => join(d, 'nvcc')).find((p) => existsSync(p));
  if (!nvcc) return null;
  try {
    const out = execFileSync(nvcc, ['--dryrun', '-x', 'cu', '-c', '/dev/null', '-o', '/dev/null'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20000 });
    const top = out.match(/^#\$ TOP=(.+)$/m)?.[1];
    if (top) return realpathSync(top);
  } catch (e) {
    const top = String(e.stderr ?? '').match(/^#\$ TOP=(.+)$/m)?.[1];
    if (top && existsSync(top)) return realpathSync(top);
  }
  return dirname(dirname(realpathSync(nvcc)));
}

function toolkitCandidate(prefix, from) {
  const dirs = [join(prefix, 'include'), join(prefix, 'targets', 'x86_64-linux', 'include')].filter((d) => existsSync(join(d, 'cuda_runtime.h')));
  if (!dirs.length) return null;
  const lib = [join(prefix, 'lib64'), join(prefix, 'lib')].find((d) => existsSync(d));
  return { from, includeDirs: [dirs[0]], libDir: lib ?? null, version: cudartVersion(dirs[0]) };
}

// The pip `nvidia` packages beside torch: CUDA 13 wheels share nvidia/cu13/include, CUDA 12 wheels have
// one include/ per package (nvidia/cuda_runtime/include, ...). cuda_runtime.h needs crt/host_config.h.
function pipCandidate(torchPrefix) {
  const nv = join(dirname(torchPrefix), 'nvidia');
  if (!existsSync(nv)) return { missing: `${nv} (no pip nvidia packages beside torch)` };
  const dirs = readdirSync(nv).sort((a, b) => (a.startsWith('cu1') ? -1 : b.startsWith('cu1') ? 1 : a.localeCompare(b)))
    .map((d) => join(nv, d, 'include')).filter((d) => existsSync(d));
  const runtime = dirs.find((d) => existsSync(join(d, 'cuda_runtime.h')));
  const crt = dirs.find((d) => existsSync(join(d, 'crt', 'host_config.h')));
  if (!runtime || !crt) {
    return { missing: `${nv} (has ${runtime ? '' : 'no '}cuda_runtime.h from nvidia-cuda-runtime, ${crt ? '' : 'no '}crt/host_config.h from nvidia-cuda-crt)` };
  }
  const lib = join(dirname(runtime), 'lib');
  return { from: 'pip nvidia packages beside torch', includeDirs: dirs, libDir: existsSync(lib) ? lib : null, version: cudartVersion(runtime) };
}

/**
 * Where the CUDA headers for a CUDA libtorch come from: { from, includeDirs, libDir, version }, or
 * { error } naming every place looked at and what to install. `prefixes` are the toolkit's standard
 * prefixes (a parameter so the search order itself can be tested).
 */
export function findCudaHeaders(t, { env = process.env, prefixes = null } = {}) {
  const want = t.cudaVersion;
  const looked = [];
  // The pip wheels of libraries a toolkit does not ship (cuDNN, NCCL, cuSPARSELt) stay usable beside it.
  const nv = join(dirname(t.prefix), 'nvidia');
  const libraryDirs = existsSync(nv)
    ? readdirSync(nv).map((d) => join(nv, d, 'include')).filter((d) => existsSync(d) && !existsSync(join(d, 'cuda_runtime.h')))
    : [];
  const accept = (c) => {
    if (!c) return null;
    if (c.missing) { looked.push(c.missing); return null; }
    if (want && c.version && major(c.version) !== major(want)) {
      looked.push(`${c.includeDirs[0]} (CUDA ${c.version} headers; torch was built for CUDA ${want})`);
      return null;
    }
    if (c.from !== 'pip nvidia packages beside torch') c.includeDirs = [...c.includeDirs, ...libraryDirs];
    return c;
  };
  for (const k of ['CUDA_HOME', 'CUDA_PATH']) {
    if (!env[k]) continue;
    const c = toolkitCandidate(env[k], k);
    if (!c) return { error: `${k}=${env[k]} is set but ${join(env[k], 'include', 'cuda_runtime.h')} does not exist; fix or unset ${k}` };
    if (accept(c)) return c;
  }
  const pip = accept(pipCandidate(t.prefix));
  if (pip) return pip;
  const std = prefixes ?? ['/usr/local/cuda', ...(want ? [`/usr/local/cuda-${want}`] : []), '/opt/cuda', '/usr'];
  for (const p of std) {
    const c = accept(toolkitCandidate(p, `CUDA toolkit at ${p}`));
    if (c) return c;
    if (!existsSync(join(p, 'include', 'cuda_runtime.h'))) looked.push(`${p}/include`);
  }
  const nvcc = nvccPrefix(env);
  if (nvcc) {
    const c = accept(toolkitCandidate(nvcc, `nvcc's toolkit at ${nvcc}`));
    if (c) return c;
    looked.push(`${nvcc}/include (nvcc's prefix)`);
  } else looked.push('nvcc (not on PATH)');
  const cu = want ? major(want) : 13;
  return {
    error:
      `resnet-ts: ${t.prefix} is a CUDA libtorch (CUDA ${want ?? '?'}) but no CUDA headers (cuda_runtime.h) were found.\n` +
      `  looked in: CUDA_HOME, CUDA_PATH (unset), ${looked.join(', ')}\n` +
      `  install the headers beside that torch: ${t.python ?? 'python'} -m pip install nvidia-cuda-runtime nvidia-cuda-crt nvidia-cuda-cccl` +
      `${cu >= 13 ? '' : '-cu12'}\n  or the CUDA ${want ?? cu} toolkit and set CUDA_HOME to it`,
  };
}

/** The libtorch to build against (see the order above), with its CUDA headers when it is a CUDA build. */
export function findLibtorch({ env = process.env } = {}) {
  const rejected = [];
  const candidates = [];
  if (env.LIBTORCH) {
    const p = resolve(env.LIBTORCH);
    const t = fromPrefix(p, 'LIBTORCH');
    if (!t) {
      throw new Error(`resnet-ts: LIBTORCH=${env.LIBTORCH} is not a libtorch: ${join(p, 'include', 'ATen', 'ATen.h')} or ${join(p, 'lib')} is missing.\n` +
        '  Point LIBTORCH at an unpacked libtorch zip or a pip torch folder (site-packages/torch), or unset it.');
    }
    candidates.push(() => t);
  }
  candidates.push(() => venvTorch(join(root, '.venv'), '.venv'));
  for (const py of [env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean)) candidates.push(() => pythonTorch(py, 'python'));
  for (const e of managedEnvs()) candidates.push(() => venvTorch(e, `resnet-ts cache (${e})`));
  for (const c of candidates) {
    const t = c();
    if (!t) continue;
    if (major(t.version) < 2) {
      rejected.push(`${t.prefix} is torch ${t.version}; resnet-ts needs libtorch 2.x`);
      continue;
    }
    if (t.cuda) t.cudaHeaders = findCudaHeaders(t, { env });
    return t;
  }
  const why = rejected.length ? `\n  rejected: ${rejected.join('\n  rejected: ')}` : '';
  const err = new Error(
    `resnet-ts: no libtorch 2.x found.${why}\n` +
      '  Fix one of:\n' +
      '    npx resnet-ts setup                          (creates a cached torch env with pip and builds the addon)\n' +
      '    LIBTORCH=/path/to/libtorch npx resnet-ts setup   (an unpacked libtorch zip, or a pip torch folder)\n' +
      '    PYTHON=/path/to/python npx resnet-ts setup       (a Python with torch>=2.0 installed)',
  );
  err.code = 'RESNET_TS_NO_LIBTORCH';
  throw err;
}

/** One line: what was found, and for a CUDA build where its headers and libraries come from. */
export function describe(t) {
  let cuda = 'CUDA no';
  if (t.cuda) {
    const h = t.cudaHeaders;
    cuda = h?.error
      ? `CUDA ${t.cudaVersion ?? 'yes'} (headers: NOT FOUND)`
      : `CUDA ${t.cudaVersion ?? h.version} (headers ${h.version ?? '?'} from ${h.from}: ${h.includeDirs[0]}; libraries: ${t.libDirs[0]}` +
        `${h.libDir ? ` + ${h.libDir}` : ''})`;
  }
  return `libtorch ${t.version} from ${t.how} at ${t.prefix}; C++11 ABI=${t.abi}; ${cuda}`;
}

/** The compiler and linker flags binding.gyp asks for (also the libtorch part of the addon's build key). */
export function buildFlags(t) {
  if (t.cudaHeaders?.error) throw new Error(t.cudaHeaders.error);
  const cudaInc = t.cuda ? t.cudaHeaders.includeDirs : [];
  const include = [...t.includeDirs, ...cudaInc.filter((d) => d !== '/usr/include')];
  const dnnl = dnnlHeaders();
  return {
    include,
    defines: [
      `_GLIBCXX_USE_CXX11_ABI=${t.abi}`,
      ...(glooHeaders(t) ? ['USE_C10D_GLOO', 'RESNET_TS_GLOO=1'] : ['RESNET_TS_GLOO=0']),
      ...(ncclHeaders(t, [...include, '/usr/include']) ? ['USE_C10D_NCCL', 'RESNET_TS_NCCL=1'] : ['RESNET_TS_NCCL=0']),
      `RESNET_TS_DNNL=${dnnl ? 1 : 0}`,
    ],
    libs: ['-ltorch', '-ltorch_cpu', '-lc10', ...(dnnl ? ['-ldnnl'] : [])],
    ldflags: [
      ...t.libDirs.map((d) => `-L${d} -Wl,-rpath,${d}`),
      ...(t.cuda ? ['-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed'] : []),
    ],
    cflags: dnnl ? [`-iquote${dnnlShim(dnnl)}`] : [],
    dnnl: dnnlVersion(dnnl),
    cuda: t.cuda ? 1 : 0,
  };
}

function main() {
  const arg = process.argv[2] ?? '--json';
  let t;
  try {
    t = findLibtorch();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
  const buildFlag = !['--json', '--describe', '--cuda'].includes(arg);
  let f = null;
  try {
    f = buildFlag ? buildFlags(t) : null;
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
  const out = {
    '--json': () => JSON.stringify(t, null, 2),
    '--include': () => f.include.join(' '),
    '--libdirs': () => t.libDirs.join(' '),
    '--libs': () => f.libs.join(' '),
    '--cuda': () => (t.cuda ? '1' : '0'),
    '--defines': () => f.defines.join(' '),
    '--ldflags': () => f.ldflags.join(' '),
    '--cflags': () => f.cflags.join(' '),
    '--describe': () => describe(t),
  }[arg];
  if (!out) {
    console.error(`unknown option ${arg}`);
    process.exit(2);
  }
  if (arg === '--include') console.error(`resnet-ts: building against ${describe(t)}`);
  console.log(out());
}

if (process.argv[1] && realpathSync(resolve(process.argv[1])) === realpathSync(fileURLToPath(import.meta.url))) main();
