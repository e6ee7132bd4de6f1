// CUDA API on a machine without a GPU, for both builds (the CPU one, and the CUDA one CI builds into
// build-cuda/ and runs this file against): what the addon links, memory statistics, cuDNN/TF32 switches,
// CUDA graphs and out-of-memory errors. The reference is PyTorch of the same build (TORCH_PYTHON), asked
// the same questions. The GPU-only checks are in test/gpu/ (npm run test:gpu).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { CUDAGraph, CudaOutOfMemoryError, backends, cuda, cudaWarmup, distributed, graphPoolHandle, torchVersion, zeros } from '../lib/index.ts';
import { addonPath } from '../lib/addon.ts';
import { hasTorchPython, py } from './helpers.ts';

function error(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

interface TorchFacts {
  version: string;
  built: boolean;
  available: boolean;
  memory: [number, number, number];
  cudnnTF32: boolean;
  matmulTF32: boolean;
  cudaError: string | null;
}
const facts: TorchFacts | null = hasTorchPython
  ? py<TorchFacts>(`
import json, torch
err = None
try:
    torch.zeros(2, device='cuda')
except Exception as e:
    err = str(e).split('\\n')[0]
print(json.dumps(dict(version=torch.__version__.split('+')[0], built=torch.backends.cuda.is_built(), available=torch.cuda.is_available(),
    memory=[torch.cuda.memory_allocated(), torch.cuda.memory_reserved(), torch.cuda.max_memory_allocated()],
    cudnnTF32=torch.backends.cudnn.allow_tf32, matmulTF32=torch.backends.cuda.matmul.allow_tf32, cudaError=err)))
`)
  : null;

test('the addon links libtorch_cuda exactly when cuda.isBuilt() says so (readelf)', () => {
  const needed = execFileSync('readelf', ['-d', addonPath()], { encoding: 'utf8' });
  assert.is(cuda.isBuilt(), needed.includes('[libtorch_cuda.so]'));
  assert.is(cuda.isBuilt(), needed.includes('[libc10_cuda.so]'));
});

test('build, availability and device count agree with PyTorch of the same libtorch', () => {
  if (!facts) return;
  assert.is(torchVersion(), facts.version);
  assert.is(cuda.isBuilt(), facts.built);
  assert.is(cuda.isAvailable(), facts.available);
  if (!facts.available) assert.is(cuda.deviceCount(), 0);
});

test('without a device, a CUDA tensor is a catchable Error with libtorch\'s message', () => {
  if (cuda.isAvailable()) return;
  const e = error(() => zeros([2], { device: 'cuda' }));
  assert.instance(e, Error);
  assert.not.instance(e, CudaOutOfMemoryError);
  // A CUDA build says what PyTorch says ("Found no NVIDIA driver ..."); a CPU build names CUDA.
  if (facts?.built && facts.cudaError) assert.ok(e.message.includes(facts.cudaError.split('. ')[0]!), `${e.message} vs ${facts.cudaError}`);
  else assert.match(e.message, /cuda/i);
});

test('memory(), resetPeak(), emptyCache(), synchronize() without a device: zeros and no-ops, as torch.cuda', () => {
  if (cuda.isAvailable()) return;
  const m = cuda.memory();
  assert.equal([m.allocated, m.reserved, m.peakAllocated], facts?.memory ?? [0, 0, 0]);
  cuda.resetPeak();
  cuda.emptyCache();
  cuda.synchronize();
  assert.equal(cuda.memory(), m);
});

test('cudnn.benchmark is on by default and switchable; TF32 defaults are PyTorch\'s', () => {
  assert.is(backends.cudnn.benchmark, true);
  backends.cudnn.benchmark = false;
  assert.is(backends.cudnn.benchmark, false);
  backends.cudnn.benchmark = true;
  if (facts) {
    assert.is(backends.cudnn.allowTF32, facts.cudnnTF32);
    assert.is(backends.cuda.matmul.allowTF32, facts.matmulTF32);
  }
  const [conv, mm] = [backends.cudnn.allowTF32, backends.cuda.matmul.allowTF32];
  backends.cudnn.allowTF32 = !conv;
  backends.cuda.matmul.allowTF32 = !mm;
  assert.equal([backends.cudnn.allowTF32, backends.cuda.matmul.allowTF32], [!conv, !mm]);
  backends.cudnn.allowTF32 = conv;
  backends.cuda.matmul.allowTF32 = mm;
});

test('CUDA graphs without a device are refused with an Error that says why', () => {
  if (cuda.isAvailable()) return;
  const why = cuda.isBuilt() ? /need(s)? a CUDA device/ : /has no CUDA/;
  assert.match(error(() => new CUDAGraph()).message, why);
  assert.match(error(() => cudaWarmup(() => undefined)).message, why);
  if (!cuda.isBuilt()) assert.match(error(() => graphPoolHandle()).message, why);
});

test('a CPU out-of-memory stays a plain Error; CudaOutOfMemoryError is an Error subclass with its numbers', () => {
  const e = error(() => zeros([1 << 20, 1 << 20, 1 << 10]));
  assert.instance(e, Error);
  assert.not.instance(e, CudaOutOfMemoryError);
  assert.match(e.message, /^zeros: /);
  const c = new CudaOutOfMemoryError('CUDA out of memory');
  assert.instance(c, Error);
  assert.is(c.name, 'CudaOutOfMemoryError');
  assert.ok(Number.isNaN(c.requestedBytes) && Number.isNaN(c.freeBytes));
});

test('NCCL: a CPU build says the backend is not in it; a CUDA build has it and refuses a device it lacks; no group is left', () => {
  if (cuda.isAvailable()) return;
  const env = { rank: 0, worldSize: 1, localRank: 0, masterAddr: '127.0.0.1', masterPort: 29999 };
  const e = error(() => distributed.init(env, { backend: 'nccl', timeoutMs: 5000 }));
  if (cuda.isBuilt()) assert.match(e.message, /deviceIndex.*a CUDA device of this machine \(it has 0\)/);
  else assert.match(e.message, /backend 'nccl' is not available in this build \(available: gloo[;)]/);
  assert.is(distributed.isInitialized(), false);
});

test.run();
