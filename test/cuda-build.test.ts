// Building against a CUDA libtorch without a GPU: scripts/libtorch.mjs's CUDA header discovery (its
// order, a set-but-wrong CUDA_HOME, headers of the wrong CUDA major, none anywhere), and, where
// `bash scripts/setup.sh --cuda` has made the cached CUDA torch and build-cuda/, what --describe and
// `resnet-ts doctor` say about it. References: the CUDA torch's own Python (torch.version.cuda) and the
// headers' CUDART_VERSION.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildTools } from '../scripts/build-tools.ts';
import { root, tmp } from './helpers.ts';

const { envDir, findCudaHeaders, findLibtorch, torchInVenv } = await buildTools();

const cudaEnv = envDir('cuda');
const cudaTorch = existsSync(cudaEnv) ? torchInVenv(cudaEnv) : null;
const cudaAddon = join(root, 'build-cuda', 'build', 'Release', 'resnet_ts.node');
const dir = tmp('cuda-build-');

// A libtorch-shaped prefix: ATen.h, libtorch_cuda.so, version.py saying CUDA `cuda`, and optionally pip
// nvidia headers beside it with the given CUDART_VERSION.
function fakeTorch(name: string, cuda: string, cudart?: number): string {
  const prefix = join(dir, name, 'site-packages', 'torch');
  mkdirSync(join(prefix, 'include', 'ATen'), { recursive: true });
  mkdirSync(join(prefix, 'lib'), { recursive: true });
  writeFileSync(join(prefix, 'include', 'ATen', 'ATen.h'), '');
  for (const l of ['libtorch_cuda.so', 'libc10.so']) writeFileSync(join(prefix, 'lib', l), '');
  writeFileSync(join(prefix, 'version.py'), `__version__ = '2.14.1+cu${cuda.replace('.', '')}'\ncuda: Optional[str] = '${cuda}'\n`);
  if (cudart !== undefined) {
    const inc = join(dirname(prefix), 'nvidia', 'cu13', 'include');
    mkdirSync(join(inc, 'crt'), { recursive: true });
    writeFileSync(join(inc, 'cuda_runtime.h'), '');
    writeFileSync(join(inc, 'crt', 'host_config.h'), '');
    writeFileSync(join(inc, 'cuda_runtime_api.h'), `#define CUDART_VERSION ${cudart}\n`);
  }
  return prefix;
}

test('a CUDA libtorch with no CUDA headers anywhere is one error naming what to install', () => {
  const prefix = fakeTorch('bare', '13.0');
  const t = findLibtorch({ env: { LIBTORCH: prefix, PATH: '' } });
  assert.ok(t.cuda);
  assert.is(t.cudaVersion, '13.0');
  const h = findCudaHeaders(t, { env: { PATH: '' }, prefixes: [] }) as { error?: string };
  assert.ok(h.error, 'expected an error');
  assert.match(h.error!, /is a CUDA libtorch \(CUDA 13\.0\) but no CUDA headers \(cuda_runtime\.h\) were found/);
  assert.match(h.error!, /pip install nvidia-cuda-runtime nvidia-cuda-crt nvidia-cuda-cccl/);
  assert.match(h.error!, /CUDA_HOME/);
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'libtorch.mjs'), '--include'], { encoding: 'utf8', env: { ...process.env, LIBTORCH: prefix, CUDA_HOME: '', CUDA_PATH: '', PATH: dirname(process.execPath) } });
  if (!existsSync('/usr/local/cuda/include/cuda_runtime.h') && !existsSync('/opt/cuda/include/cuda_runtime.h') && !existsSync('/usr/include/cuda_runtime.h')) {
    assert.is(r.status, 1);
    assert.match(r.stderr, /no CUDA headers/);
  }
});

test('pip headers beside torch are found, with their CUDA version; headers of another CUDA major are skipped', () => {
  const ok = fakeTorch('pip13', '13.0', 13000);
  const h = findCudaHeaders(findLibtorch({ env: { LIBTORCH: ok, PATH: '' } }), { env: { PATH: '' }, prefixes: [] }) as { from: string; includeDirs: string[]; version: string };
  assert.is(h.from, 'pip nvidia packages beside torch');
  assert.is(h.version, '13.0');
  assert.is(h.includeDirs[0], join(dirname(ok), 'nvidia', 'cu13', 'include'));
  const old = fakeTorch('pip12', '13.0', 12040);
  const e = findCudaHeaders(findLibtorch({ env: { LIBTORCH: old, PATH: '' } }), { env: { PATH: '' }, prefixes: [] }) as { error: string };
  assert.match(e.error, /CUDA 12\.4 headers; torch was built for CUDA 13\.0/);
});

test('CUDA_HOME comes first; set but without headers it is an error naming it', () => {
  const prefix = fakeTorch('home', '13.0', 13000);
  const t = findLibtorch({ env: { LIBTORCH: prefix, PATH: '' } });
  const toolkit = join(dir, 'toolkit');
  mkdirSync(join(toolkit, 'include'), { recursive: true });
  writeFileSync(join(toolkit, 'include', 'cuda_runtime.h'), '');
  writeFileSync(join(toolkit, 'include', 'cuda_runtime_api.h'), '#define CUDART_VERSION 13000\n');
  const h = findCudaHeaders(t, { env: { CUDA_HOME: toolkit, PATH: '' }, prefixes: [] }) as { from: string; includeDirs: string[] };
  assert.is(h.from, 'CUDA_HOME');
  assert.equal(h.includeDirs, [join(toolkit, 'include')]);
  const e = findCudaHeaders(t, { env: { CUDA_HOME: join(dir, 'nowhere'), PATH: '' }, prefixes: [] }) as { error: string };
  assert.match(e.error, /^CUDA_HOME=.*nowhere is set but .*cuda_runtime\.h does not exist/);
});

test('the cached CUDA torch (setup --cuda): CUDA version as its Python says, headers from its pip nvidia packages', () => {
  if (!cudaTorch) return console.log('  (no cached CUDA torch: bash scripts/setup.sh --cuda makes it)');
  const py = join(cudaEnv, 'bin', 'python');
  const version = execFileSync(py, ['-c', 'import torch; print(torch.version.cuda)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const t = findLibtorch({ env: { ...process.env, LIBTORCH: cudaTorch, CUDA_HOME: '', CUDA_PATH: '' } });
  assert.is(t.cudaVersion, version);
  const h = t.cudaHeaders as { from: string; includeDirs: string[]; version: string };
  assert.is(h.from, 'pip nvidia packages beside torch');
  const cudart = Number(readFileSync(join(h.includeDirs[0]!, 'cuda_runtime_api.h'), 'utf8').match(/#define CUDART_VERSION\s+(\d+)/)![1]);
  assert.is(h.version, `${Math.floor(cudart / 1000)}.${(cudart % 1000) / 10}`);
  const d = execFileSync(process.execPath, [join(root, 'scripts', 'libtorch.mjs'), '--describe'], { encoding: 'utf8', env: { ...process.env, LIBTORCH: cudaTorch, CUDA_HOME: '', CUDA_PATH: '' } });
  assert.match(d, new RegExp(`CUDA ${version.replace('.', '\\.')} \\(headers .* from pip nvidia packages beside torch: ${h.includeDirs[0]}`));
});

test('resnet-ts doctor on the CUDA build: CUDA built yes, available no, and where the headers came from', () => {
  if (!cudaTorch || !existsSync(cudaAddon)) return console.log('  (no build-cuda/: bash scripts/setup.sh --cuda builds it)');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'resnet-ts.ts'), 'doctor'], {
    cwd: root, encoding: 'utf8', env: { ...process.env, LIBTORCH: cudaTorch, RESNET_TS_ADDON: cudaAddon, CUDA_HOME: '', CUDA_PATH: '' },
  });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /CUDA built\s+yes \(CUDA 13\.0\)/);
  assert.match(r.stdout, /CUDA available\s+no/);
  assert.match(r.stdout, /headers\s+CUDA 13\.0 from pip nvidia packages beside torch: .*nvidia\/cu13\/include/);
  assert.match(r.stdout, /addon\s+.*build-cuda.*\(RESNET_TS_ADDON\): loads, built against libtorch 2\.14\.1/);
});

test.run();
