// The CUDA checks of `npm run test:gpu` (scripts/gpu/run.sh runs the compiled copy on the GPU machine).
// Each check is a function that throws on failure and returns its figures; the results go to one JSON
// file, rewritten after every check so a run cut short still reports what it did.
//   node checks.js --json OUT.json [--deadline EPOCH_MS]
// RESNET_TS_GPU_DEVICE=cpu runs the same logic on the CPU (what can be checked of this file without a GPU:
// the CUDA-only checks report "skipped: needs CUDA").
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
// Module by module, not lib/index.ts: the GPU machine gets no node_modules beyond the build's (no sharp).
import { backends, CUDAGraph, CudaOutOfMemoryError, cudaWarmup } from '../../lib/cuda.ts';
import { cuda, torchVersion } from '../../lib/device.ts';
import { arange, empty, manualSeed, randint, randn } from '../../lib/creation.ts';
import { crossEntropy } from '../../lib/nn/functional.ts';
import { autocast, keep, memory, noGrad, tidy, type Device, type Tensor } from '../../lib/tensor.ts';
import * as models from '../../lib/models/index.ts';
import { SGD } from '../../lib/optim/index.ts';
import { eagerStep, type StepFactory } from '../../lib/train/step.ts';
import { graphStep } from '../../lib/train/graph-step.ts';
import * as distributed from '../../lib/distributed/index.ts';

const DEV = (process.env.RESNET_TS_GPU_DEVICE ?? 'cuda') as Device;
const onCuda = DEV.startsWith('cuda');
const args = process.argv.slice(2);
const jsonPath = args[args.indexOf('--json') + 1] ?? 'gpu.json';
const deadline = args.includes('--deadline') ? Number(args[args.indexOf('--deadline') + 1]) : Date.now() + 480_000;

// fp32 on the GPU against fp32 on the CPU, TF32 off: max |gpu - cpu| / max |cpu|. bf16 autocast against the
// same fp32 reference: bf16 keeps 8 bits of mantissa, so deep nets drift by a few per cent of the output
// range (CPU bf16 autocast against CPU fp32, measured here: 0.3 % to 2.4 %); a broken kernel is off by ~100 %.
const FP32_TOL = 1e-3;
const BF16_TOL = 0.1;
// RESNET_TS_GPU_QUICK=1: two zoo models and 60 training steps, for running this file's logic on a CPU.
const QUICK = process.env.RESNET_TS_GPU_QUICK === '1';
const ZOO = QUICK ? ['resnet18', 'resnet20'] : models.list();
const STEPS = QUICK ? { total: 60, at: 10, batch: 16 } : { total: 500, at: 50, batch: 128 };

interface Result { name: string; ok: boolean | null; seconds: number; [k: string]: unknown }
const results: Result[] = [];

function deviceName(): string {
  if (!onCuda) return 'cpu (RESNET_TS_GPU_DEVICE=cpu)';
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8' }).trim().split('\n').join('; ');
  } catch {
    return `${cuda.deviceCount()} CUDA device(s)`;
  }
}

const header = { device: deviceName(), date: new Date().toISOString(), node: process.version, torch: torchVersion(), cudaBuilt: cuda.isBuilt(), cudaAvailable: cuda.isAvailable() };

function save(): void {
  const passed = results.filter((r) => r.ok === true).length;
  const failed = results.filter((r) => r.ok === false).length;
  writeFileSync(jsonPath, `${JSON.stringify({ ...header, passed, failed, skipped: results.length - passed - failed, checks: results }, null, 2)}\n`);
}

async function check(name: string, needsCuda: boolean, fn: () => Record<string, unknown> | Promise<Record<string, unknown>>): Promise<void> {
  const t0 = Date.now();
  if (needsCuda && !onCuda) {
    results.push({ name, ok: null, seconds: 0, skipped: 'needs CUDA' });
  } else if (Date.now() > deadline) {
    results.push({ name, ok: null, seconds: 0, skipped: 'out of time' });
  } else {
    try {
      const figures = await fn();
      results.push({ name, ok: true, seconds: (Date.now() - t0) / 1000, ...figures });
    } catch (e) {
      results.push({ name, ok: false, seconds: (Date.now() - t0) / 1000, error: (e as Error).stack ?? String(e) });
    }
  }
  const r = results[results.length - 1]!;
  console.log(`${r.ok === true ? 'ok  ' : r.ok === false ? 'FAIL' : 'skip'} ${name} (${r.seconds.toFixed(1)} s)${r.ok === false ? `\n${r.error}` : ''}`);
  save();
}

function relErr(a: Tensor, ref: Tensor): number {
  return tidy(() => a.float().to('cpu').sub(ref).abs().max().item() as number / Math.max(ref.abs().max().item() as number, 1e-12));
}

// BN statistics and affines away from their init, so that every buffer moved to the device matters.
function perturbNorms(m: models.ResNet | ReturnType<typeof models.create>): void {
  noGrad(() => {
    for (const [k, t] of Object.entries(m.stateDict())) {
      if (k.endsWith('running_mean')) t.uniform_(-0.1, 0.1);
      else if (k.endsWith('running_var')) t.uniform_(0.5, 1.5);
      else if (/bn\d*\.weight$|downsample\.1\.weight$/.test(k)) t.uniform_(0.5, 1.5);
    }
  });
}

await check(`every zoo model: device fp32 vs CPU fp32 (${FP32_TOL}) and bf16 autocast vs CPU fp32 (${BF16_TOL})`, false, () => {
  backends.cudnn.allowTF32 = false;
  backends.cuda.matmul.allowTF32 = false;
  const rows: Record<string, { mode: string; fp32: number; bf16: number }> = {};
  const bad: string[] = [];
  for (const name of ZOO) {
    if (Date.now() > deadline) throw new Error(`out of time after ${Object.keys(rows).length} models: ${JSON.stringify(rows)}`);
    manualSeed(0);
    const m = models.create(name);
    perturbNorms(m);
    m.eval();
    tidy(() => {
      const x = randn(models.family(name) === 'imagenet' ? [2, 3, 224, 224] : [4, 3, 32, 32]);
      let ref = noGrad(() => m.forward(x));
      // Random weights through a thousand blocks overflow without normalisation (resnet1202, preact_resnet1001):
      // those compare in train mode, with batch statistics, which keep every layer's output in range.
      const finite = (t: Tensor): boolean => Number.isFinite(t.abs().max().item()); // max propagates NaN
      if (!finite(ref)) {
        m.train();
        ref = noGrad(() => m.forward(x));
      }
      m.to(DEV);
      const xd = x.to(DEV);
      const fp32 = relErr(noGrad(() => m.forward(xd)), ref);
      const bf16 = relErr(noGrad(() => autocast(() => m.forward(xd), { dtype: 'bfloat16', device: onCuda ? 'cuda' : 'cpu' })), ref);
      rows[name] = { mode: m.training ? 'train' : 'eval', fp32, bf16 };
      if (!(fp32 <= FP32_TOL && bf16 <= BF16_TOL)) bad.push(`${name}: fp32 ${fp32.toExponential(2)}, bf16 ${bf16.toExponential(2)}`);
    });
    m.dispose();
  }
  backends.cudnn.allowTF32 = true;
  if (bad.length) throw new Error(`outside tolerance: ${bad.join('; ')}\n${JSON.stringify(rows)}`);
  return { models: rows, fp32Tol: FP32_TOL, bf16Tol: BF16_TOL };
});

await check('CUDA out-of-memory is a CudaOutOfMemoryError with requested/free bytes, and the device recovers', true, () => {
  cuda.emptyCache();
  const base = cuda.memory().allocated;
  let huge: unknown;
  try {
    empty([2 ** 38], { device: DEV });
  } catch (e) {
    huge = e;
  }
  if (!(huge instanceof CudaOutOfMemoryError)) throw new Error(`1 TiB request: expected CudaOutOfMemoryError, got ${String(huge)}`);
  if (huge.requestedBytes !== 2 ** 40) throw new Error(`requestedBytes ${huge.requestedBytes} != 2^40`);
  if (!(huge.freeBytes > 0 && huge.freeBytes <= huge.totalBytes)) throw new Error(`freeBytes ${huge.freeBytes}, totalBytes ${huge.totalBytes}`);
  // Real pressure: 4 GiB blocks until the device is full, then everything back and a training step.
  const blocks: Tensor[] = [];
  let full: unknown;
  try {
    for (let i = 0; i < 256; i++) blocks.push(keep(empty([2 ** 30], { device: DEV })));
  } catch (e) {
    full = e;
  }
  const held = blocks.length * 2 ** 32;
  for (const b of blocks) b.dispose();
  cuda.emptyCache();
  if (!(full instanceof CudaOutOfMemoryError)) throw new Error(`filling the device: expected CudaOutOfMemoryError, got ${String(full)}`);
  const after = cuda.memory().allocated;
  if (after !== base) throw new Error(`allocated ${after} after recovery, ${base} before`);
  const m = models.resnet18().to(DEV);
  const opt = new SGD(m.parameters(), { lr: 0.01 });
  const loss = tidy(() => {
    const l = crossEntropy(m.forward(randn([8, 3, 224, 224], { device: DEV })), randint(0, 1000, [8], { device: DEV }));
    l.backward();
    opt.step();
    return l.item() as number;
  });
  m.dispose();
  if (!Number.isFinite(loss)) throw new Error(`loss ${loss} after recovery`);
  return { requestedBytes: huge.requestedBytes, freeBytes: huge.freeBytes, totalBytes: huge.totalBytes, heldBeforeFull: held, fullMessage: full.message.slice(0, 200) };
});

await check(`device memory is flat over ${STEPS.total} training steps (resnet20, batch ${STEPS.batch})`, false, () => {
  manualSeed(0);
  const m = models.resnet20().to(DEV);
  const opt = new SGD(m.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });
  const used = (): number => (onCuda ? cuda.memory().allocated : memory().bytes);
  let at50 = { bytes: 0, tensors: 0, reserved: 0 };
  for (let step = 1; step <= STEPS.total; step++) {
    tidy(() => {
      opt.zeroGrad();
      const loss = crossEntropy(m.forward(randn([STEPS.batch, 3, 32, 32], { device: DEV })), randint(0, 10, [STEPS.batch], { device: DEV }));
      loss.backward();
      opt.step();
    });
    if (step === STEPS.at) {
      if (onCuda) cuda.synchronize();
      at50 = { bytes: used(), tensors: memory().tensors, reserved: onCuda ? cuda.memory().reserved : 0 };
      cuda.resetPeak();
    }
  }
  if (onCuda) cuda.synchronize();
  const at500 = { bytes: used(), tensors: memory().tensors, reserved: onCuda ? cuda.memory().reserved : 0, peakAllocated: onCuda ? cuda.memory().peakAllocated : 0 };
  m.dispose();
  if (at500.bytes !== at50.bytes || at500.tensors !== at50.tensors) throw new Error(`step ${STEPS.at} ${JSON.stringify(at50)} vs step ${STEPS.total} ${JSON.stringify(at500)}`);
  return { [`step${STEPS.at}`]: at50, [`step${STEPS.total}`]: at500 };
});

await check('CUDA graphs: side-stream warm-up, capture, replay on refilled inputs, a shared pool, a captured resnet18 forward', true, () => {
  const x = keep(empty([4096], { device: DEV }));
  let runs = 0;
  cudaWarmup(() => tidy(() => void (runs++, x.mul(2).add(1))), 3);
  if (runs !== 3) throw new Error(`warm-up ran ${runs} times`);
  let y: Tensor | undefined;
  let z: Tensor | undefined;
  // tidy inside a capture frees the intermediates into the graph's pool, as Python's refcounting does.
  const g = new CUDAGraph().capture(() => void (y = tidy(() => x.mul(2).add(1))));
  const g2 = new CUDAGraph().capture(() => void (z = tidy(() => y!.add(3))), { pool: g.pool() });
  const diffs: number[] = [];
  for (const start of [0, 100, -7]) {
    tidy(() => x.copy_(arange(start, start + 4096, 1, { device: DEV }).float()));
    g.replay();
    g2.replay();
    cuda.synchronize();
    diffs.push(tidy(() => {
      const want = arange(start, start + 4096, 1, { device: DEV }).float().mul(2);
      return Math.max(y!.sub(want.add(1)).abs().max().item() as number, z!.sub(want.add(4)).abs().max().item() as number);
    }));
  }
  if (diffs.some((d) => d !== 0)) throw new Error(`replayed values differ from eager: ${diffs}`);
  manualSeed(0);
  const m = models.resnet18().to(DEV);
  perturbNorms(m);
  m.eval();
  const xs = keep(randn([8, 3, 224, 224], { device: DEV }));
  cudaWarmup(() => tidy(() => void noGrad(() => m.forward(xs))), 3);
  let out: Tensor | undefined;
  const gm = new CUDAGraph().capture(() => void (out = tidy(() => noGrad(() => m.forward(xs)))));
  const fresh = keep(randn([8, 3, 224, 224], { device: DEV }));
  xs.copy_(fresh);
  gm.replay();
  const eager = keep(noGrad(() => m.forward(fresh)));
  const forwardDiff = tidy(() => relErr(out!, eager.to('cpu')));
  for (const t of [x, y!, z!, xs, fresh, out!, eager]) t.dispose();
  for (const graph of [g, g2, gm]) graph.dispose();
  m.dispose();
  if (forwardDiff > 1e-5) throw new Error(`captured forward differs from eager by ${forwardDiff}`);
  return { elementwiseMaxDiff: Math.max(...diffs), forwardRelDiff: forwardDiff };
});

await check('CUDA-graph training step (train --cuda-graph) equals the eager step over 5 steps (resnet18, SGD momentum, BatchNorm)', true, () => {
  const batches = Array.from({ length: 5 }, (_, i) => {
    manualSeed(100 + i);
    return { x: keep(randn([16, 3, 64, 64], { device: DEV })), y: keep(randint(0, 1000, [16], { device: DEV })) };
  });
  // Both runs pick the same cuDNN algorithms: autotuning could choose different (equally right) kernels.
  const bench = backends.cudnn.benchmark;
  backends.cudnn.benchmark = false;
  const run = (factory: StepFactory): { losses: number[]; params: Float32Array; buffers: Float32Array } => {
    manualSeed(0);
    const m = models.resnet18().to(DEV);
    m.train();
    const optimizer = new SGD(m.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
    const step = factory({ model: m, optimizer, labelSmoothing: 0, device: DEV });
    const losses = batches.map((b) => step(b, (l) => l).loss);
    const flat = (ts: Tensor[]): Float32Array => tidy(() => Float32Array.from(ts.flatMap((t) => Array.from(t.to('cpu').to('float32').toArray() as Float32Array))));
    const out = { losses, params: flat(m.parameters()), buffers: flat(m.buffers()) };
    m.dispose();
    return out;
  };
  const eager = run(eagerStep);
  const graph = run(graphStep);
  backends.cudnn.benchmark = bench;
  for (const b of batches) for (const t of [b.x, b.y]) t.dispose();
  const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
  const paramDiff = maxDiff(eager.params, graph.params);
  const bufferDiff = maxDiff(eager.buffers, graph.buffers);
  const lossDiff = Math.max(...eager.losses.map((l, i) => Math.abs(l - graph.losses[i]!)));
  if (!(paramDiff < 1e-4 && bufferDiff < 1e-4 && lossDiff < 1e-4)) {
    throw new Error(`graph step differs from eager: parameters ${paramDiff}, BatchNorm buffers ${bufferDiff}, losses ${lossDiff}`);
  }
  return { paramDiff, bufferDiff, lossDiff, bitEqual: paramDiff === 0 && bufferDiff === 0, eagerLosses: eager.losses, graphLosses: graph.losses };
});

await check('NCCL (--backend nccl): a 1-rank ProcessGroupNCCL allreduces a CUDA tensor and a CPU one (staged through the device)', true, () => {
  distributed.init({ rank: 0, worldSize: 1, localRank: 0, masterAddr: '127.0.0.1', masterPort: 29000 + (process.pid % 1000) }, { backend: 'nccl', timeoutMs: 60_000 });
  try {
    const onDevice = keep(arange(0, 1024, 1, { device: DEV }).float());
    const onHost = keep(arange(0, 8, 1).float());
    distributed.allreduce([onDevice, onHost], 'sum');
    distributed.allreduce([onDevice], 'avg');
    const diff = tidy(() => Math.max(
      onDevice.to('cpu').sub(arange(0, 1024, 1).float()).abs().max().item() as number,
      onHost.sub(arange(0, 8, 1).float()).abs().max().item() as number,
    ));
    onDevice.dispose();
    onHost.dispose();
    if (diff !== 0) throw new Error(`a 1-rank allreduce changed the values by ${diff}`);
    return { maxDiff: diff };
  } finally {
    distributed.destroy();
  }
});

save();
const failed = results.filter((r) => r.ok === false).length;
console.log(`${results.filter((r) => r.ok).length} passed, ${failed} failed, ${results.filter((r) => r.ok === null).length} skipped -> ${jsonPath}`);
process.exit(failed ? 1 : 0);
