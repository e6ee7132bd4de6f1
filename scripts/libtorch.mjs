#!/usr/bin/env node
// Finds libtorch for the build, in a fixed order (as tch-rs does):
//   1. LIBTORCH=<prefix>        an unpacked libtorch zip or any prefix with include/ and lib/
//   2. the project's .venv torch
//   3. any other Python torch   ($PYTHON, python3, /usr/bin/python3)
// Torch < 2.0 is refused: Debian's python3-torch 1.13 is the test oracle, never linked.
//
// Usage: node scripts/libtorch.mjs [--json | --include | --libdirs | --libs | --defines | --ldflags | --cuda]
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function fromPrefix(prefix, how) {
  const inc = join(prefix, 'include');
  const lib = join(prefix, 'lib');
  if (!existsSync(join(inc, 'ATen', 'ATen.h')) || !existsSync(lib)) return null;
  let version = null;
  for (const f of [join(prefix, 'build-version'), join(prefix, 'version.py')]) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const m = text.match(/__version__\s*=\s*'([^']+)'/) ?? text.match(/^(\d+\.\d+\.\d+\S*)/m);
    if (m) { version = m[1]; break; }
  }
  if (!version) {
    const h = join(inc, 'torch', 'csrc', 'api', 'include', 'torch', 'version.h');
    if (existsSync(h)) {
      const t = readFileSync(h, 'utf8');
      const g = (k) => t.match(new RegExp(`#define TORCH_VERSION_${k} (\\d+)`))?.[1];
      if (g('MAJOR')) version = `${g('MAJOR')}.${g('MINOR')}.${g('PATCH')}`;
    }
  }
  const libs = readdirSync(lib);
  const cuda = libs.some((f) => f.startsWith('libtorch_cuda.'));
  return {
    how,
    prefix,
    version,
    cuda,
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

function venvTorch() {
  const venv = join(root, '.venv');
  const py = join(venv, 'bin', 'python');
  if (!existsSync(py)) return null;
  const viaPython = pythonTorch(py, '.venv');
  if (viaPython) return viaPython;
  // The venv's torch may lack its Python dependencies; libtorch itself is still usable.
  const libdir = join(venv, 'lib');
  for (const d of existsSync(libdir) ? readdirSync(libdir) : []) {
    const prefix = join(libdir, d, 'site-packages', 'torch');
    const found = fromPrefix(prefix, '.venv');
    if (found) return { ...found, python: py };
  }
  return null;
}

// c10d's Gloo headers include gloo's own, which the pip wheel does not ship (Debian's libgloo-dev does).
function glooHeaders(t) {
  return [...t.includeDirs, '/usr/include', '/usr/local/include'].some((d) => existsSync(join(d, 'gloo', 'allreduce.h')));
}

function major(version) {
  return Number(String(version ?? '0').split('.')[0]);
}

export function findLibtorch() {
  const rejected = [];
  const candidates = [];
  if (process.env.LIBTORCH) candidates.push(() => fromPrefix(resolve(process.env.LIBTORCH), 'LIBTORCH'));
  candidates.push(venvTorch);
  for (const py of [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean)) {
    candidates.push(() => pythonTorch(py, 'python'));
  }
  for (const c of candidates) {
    const t = c();
    if (!t) continue;
    if (major(t.version) < 2) {
      rejected.push(`${t.prefix} is torch ${t.version}; resnet-ts needs libtorch 2.x`);
      continue;
    }
    t.abi ??= 1;
    return t;
  }
  const why = rejected.length ? `\n  rejected: ${rejected.join('\n  rejected: ')}` : '';
  throw new Error(
    `resnet-ts: no libtorch 2.x found.${why}\n` +
      '  Fix one of:\n' +
      '    bash scripts/setup.sh                        (creates .venv with pip torch==2.13.0+cpu)\n' +
      '    LIBTORCH=/path/to/libtorch npm run build     (an unpacked libtorch zip from pytorch.org)\n' +
      '    PYTHON=/path/to/python npm run build         (a Python with torch>=2.0 installed)',
  );
}

function main() {
  let t;
  try {
    t = findLibtorch();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
  const libs = ['-ltorch', '-ltorch_cpu', '-lc10'];
  const arg = process.argv[2] ?? '--json';
  const out = {
    '--json': () => JSON.stringify(t, null, 2),
    '--include': () => t.includeDirs.join(' '),
    '--libdirs': () => t.libDirs.join(' '),
    '--libs': () => libs.join(' '),
    '--cuda': () => (t.cuda ? '1' : '0'),
    '--defines': () => [`_GLIBCXX_USE_CXX11_ABI=${t.abi}`, ...(glooHeaders(t) ? ['USE_C10D_GLOO', 'RESNET_TS_GLOO=1'] : ['RESNET_TS_GLOO=0'])].join(' '),
    '--ldflags': () =>
      [
        ...t.libDirs.map((d) => `-L${d} -Wl,-rpath,${d}`),
        ...(t.cuda ? ['-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed'] : []),
      ].join(' '),
    '--describe': () =>
      `libtorch ${t.version} from ${t.how} at ${t.prefix}; C++11 ABI=${t.abi}; CUDA ${t.cuda ? 'yes' : 'no'}`,
  }[arg];
  if (!out) {
    console.error(`unknown option ${arg}`);
    process.exit(2);
  }
  if (arg === '--include') console.error(`resnet-ts: using libtorch ${t.version} (${t.how}), ABI=${t.abi}, CUDA=${t.cuda}`);
  console.log(out());
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
