// npm run bench: the same work in resnet-ts, in PyTorch (the Python of the very torch build the addon links)
// and in onnxruntime-node, alternating rounds in one run, medians and the time ratios ours/PyTorch and
// ours/onnxruntime. Inference runs inference.optimize()'s fused model on the torchvision oracle's weights,
// which PyTorch loads too and onnxruntime runs as the oracle's ONNX export. Writes bench.json.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { positiveInt as int } from './cli.ts';
import {
  F, cuda, inference, io, isDevice, models, noGrad, ones, optim, randint, randn, setNumThreads, tidy, torchVersion, withAmp,
  type Device, type Tensor,
} from '../lib/index.ts';
import { bf16Pays, cpuInfo, describeCpu } from '../lib/cpu.ts';
import { graphStep } from '../lib/train/graph-step.ts';
import { describeKernels, probeKernels } from '../lib/inference/onednn.ts';
import { buildTools } from './build-tools.ts';

interface Case {
  name: string;
  kind: 'micro' | 'infer' | 'train';
  model?: string;
  batch: number;
  size: number;
  iters: number;
  warmup: number;
  calls: number;
  threads: number;
  device: Device;
  amp?: 'bf16';
  channelsLast?: boolean;
  /** Train cases: our side runs train.graphStep (forward and backward replayed from a CUDA graph); PyTorch's stays eager. */
  cudaGraph?: boolean;
  /** The oracle's weights (.pth) every side loads, and their ONNX export (inference cases). */
  weights?: string;
  onnx?: string;
}

interface Side { seconds: number[]; peakBytes: number }

interface Row {
  case: string;
  unit: string;
  ours: number;
  pytorch: number;
  onnxruntime: number | null;
  /** Time ratios: < 1 means resnet-ts took less time. */
  vsPytorch: number;
  vsOnnxruntime: number | null;
  oursPeakBytes: number;
  pytorchPeakBytes: number;
  onnxruntimePeakBytes: number | null;
  /** Every timed iteration of each side in the unit, round by round (rounds × iterations), to judge the noise. */
  samples: { ours: number[][]; pytorch: number[][]; onnxruntime: number[][] | null };
}

const program = new Command('bench')
  .description('Benchmark resnet-ts against PyTorch (same libtorch build) and onnxruntime-node in the same run')
  .option('--quick', 'a short CPU run (small batches and images)', false)
  .option('--micro', 'only the per-op overhead case', false)
  .option('--device <device>', 'cpu or cuda', 'cpu')
  .option('--cuda-graph', 'CUDA: also time each training case with the CUDA-graph step (vs PyTorch eager)', false)
  .option('--rounds <n>', 'alternating rounds per case', int, 3)
  .option('--threads <n>', 'intra-op threads for every side', int, Math.min(cpus().length, 16))
  .option('--cases <list>', 'comma-separated case-name prefixes to run (default: all)')
  .option('--no-onnx', 'leave onnxruntime-node out')
  .option('--weights-dir <dir>', 'where the oracle\'s weights and ONNX exports are kept between runs', 'runs/bench-weights')
  .option('--output <file>', 'where to write the JSON results', 'bench.json')
  .showHelpAfterError();
program.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
program.parse();
const o = program.opts<{ quick: boolean; micro: boolean; device: string; cudaGraph: boolean; rounds: number; threads: number; cases?: string; onnx: boolean; weightsDir: string; output: string }>();
if (!isDevice(o.device)) {
  console.error(`error: option '--device <device>' must be cpu or cuda; got ${o.device}`);
  process.exit(2);
}
const device = o.device as Device;
const onCuda = device.startsWith('cuda');
if (o.cudaGraph && !onCuda) {
  console.error('bench: --cuda-graph needs --device cuda (CUDA graphs replay GPU kernels)');
  process.exit(2);
}
const withOnnx = o.onnx && !onCuda;
// The libtorch in use and its Python (PyTorch's side), from the package root in a checkout and once installed.
const lib = (await buildTools()).findLibtorch();
if (!lib.python) {
  console.error('bench: the libtorch in use has no Python beside it (LIBTORCH=...); PyTorch cannot be timed');
  process.exit(2);
}
const oracle = process.env.PYTHON ?? '/usr/bin/python3';

function cases(): Case[] {
  const base = { iters: o.quick ? 3 : 5, warmup: 1, calls: 100_000, threads: o.threads, device };
  const list: Case[] = [{ ...base, name: 'add 1-element (per op)', kind: 'micro', batch: 1, size: 1, iters: 5 }];
  if (o.micro) return list;
  const size = o.quick ? 112 : 224;
  const [small, big] = o.quick ? [1, 4] : [1, 16];
  for (const m of ['resnet50', 'resnext50_32x4d']) {
    for (const b of [small, big]) {
      for (const amp of [undefined, 'bf16'] as const) {
        list.push({
          ...base, name: `${m} infer b${b}${amp ? ' bf16' : ''}`, kind: 'infer', model: m, batch: b, size, amp,
          channelsLast: amp !== undefined, iters: b === 1 ? 10 : 3, warmup: b === 1 ? 2 : 1,
        });
      }
    }
  }
  const train = o.quick ? [['resnet18', 4, 64]] as const : onCuda ? [['resnet50', 256, 224]] as const
    : [['resnet50', 8, 96], ['resnext50_32x4d', 8, 96], ['resnet18', 32, 224]] as const;
  // Training steps are timed 6 to a round after 2 warm-up steps (3 after 1 with --quick): with 3, one slow
  // stretch of a shared host moved a round's median by 15 %.
  const steps = o.quick ? { iters: 3, warmup: 1 } : { iters: 6, warmup: 2 };
  for (const [m, b, s] of train) {
    for (const amp of [undefined, 'bf16'] as const) {
      list.push({ ...base, ...steps, name: `${m} train b${b} ${s}px${amp ? ' bf16' : ''}`, kind: 'train', model: m, batch: b, size: s, amp, channelsLast: amp !== undefined });
      if (o.cudaGraph) {
        list.push({ ...base, ...steps, name: `${m} train b${b} ${s}px${amp ? ' bf16' : ''} cuda-graph`, kind: 'train', model: m, batch: b, size: s, amp, channelsLast: amp !== undefined, cudaGraph: true });
      }
    }
  }
  const only = o.cases?.split(',').map((s) => s.trim());
  return only ? list.filter((c) => only.some((n) => c.name.startsWith(n))) : list;
}

/** The oracle's weights and ONNX files for the inference cases, made once and kept in --weights-dir. */
function attachWeights(list: Case[]): void {
  const names = [...new Set(list.filter((c) => c.kind === 'infer').map((c) => c.model!))];
  if (!names.length) return;
  const dir = resolve(o.weightsDir);
  const r = spawnSync(oracle, [join(import.meta.dirname, 'bench_onnx_export.py'), dir, ...names], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`the torchvision oracle (${oracle}) could not export the bench weights:\n${r.stderr}`);
  const files = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, { pth: string; onnx: string }>;
  for (const c of list) if (c.kind === 'infer') Object.assign(c, { weights: files[c.model!]!.pth, onnx: files[c.model!]!.onnx });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function sync(): void {
  if (onCuda) cuda.synchronize();
}

/** VmRSS or VmHWM (peak resident set) of this process in bytes, from /proc/self/status. */
function statusBytes(field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

let rssBase = 0;
/**
 * Starts a peak-memory window. On CUDA: the allocator's peak. On CPU: the resident set's high-water
 * mark is reset (Linux /proc/self/clear_refs) and the current RSS taken as the base, so every side
 * reports the memory a case added, not the interpreter's own (bench_torch.py and bench_onnx.ts do the same).
 */
function resetPeak(): void {
  if (onCuda) return cuda.resetPeakMemory();
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // an older kernel: the peak then includes earlier cases
  }
  rssBase = statusBytes('VmRSS');
}

function peakBytes(): number {
  return onCuda ? cuda.memory().peakAllocated : Math.max(0, statusBytes('VmHWM') - rssBase);
}

function timeSteps(c: Case, step: () => void): number[] {
  for (let i = 0; i < c.warmup; i++) step();
  sync();
  const out: number[] = [];
  for (let r = 0; r < c.iters; r++) {
    const t = process.hrtime.bigint();
    step();
    sync();
    out.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  return out;
}

/** Times our side of one case: seconds per iteration (per call for micro). */
function runOurs(c: Case): Side {
  setNumThreads(c.threads);
  resetPeak();
  if (c.kind === 'micro') {
    const x = ones([1], { device: c.device });
    for (let i = 0; i < 1000; i++) x.add(x).dispose();
    const seconds: number[] = [];
    for (let r = 0; r < c.iters; r++) {
      const t = process.hrtime.bigint();
      for (let i = 0; i < c.calls; i++) x.add(x).dispose();
      seconds.push(Number(process.hrtime.bigint() - t) / 1e9 / c.calls);
    }
    x.dispose();
    return { seconds, peakBytes: peakBytes() };
  }
  const model = models.create(c.model!, {});
  if (c.weights) {
    const sd = io.loadPth(c.weights);
    model.loadStateDict(sd);
    for (const t of Object.values(sd)) t.dispose();
  }
  model.to(c.device);
  const x = randn([c.batch, 3, c.size, c.size], { device: c.device });
  let seconds: number[];
  if (c.kind === 'infer') {
    const net = inference.optimize(model.eval(), { amp: c.amp });
    seconds = timeSteps(c, () => tidy(() => void noGrad(() => net.forward(x))));
    net.dispose();
  } else {
    if (c.channelsLast) model.toChannelsLast();
    const input = c.channelsLast ? x.contiguous('channelsLast') : x;
    const y = randint(0, 1000, [c.batch], { device: c.device });
    const amp = <T>(fn: () => T): T => withAmp(c.amp, c.device, fn);
    model.train();
    const sgd = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
    // The graph step as fit() runs it: replay, then the loss read back and the eager optimizer step.
    const graph = c.cudaGraph ? graphStep({ model, optimizer: sgd, labelSmoothing: 0, amp: c.amp, device: c.device }) : undefined;
    seconds = graph ? timeSteps(c, () => void graph({ x: input, y }, (l) => l)) : timeSteps(c, () =>
      tidy(() => {
        sgd.zeroGrad();
        const loss = amp(() => F.crossEntropy(model.forward(input), y));
        loss.backward();
        sgd.step();
      }));
    for (const t of [y, ...(input !== x ? [input] : [])] as Tensor[]) t.dispose();
    sgd.dispose?.();
  }
  const peak = peakBytes();
  x.dispose();
  model.dispose();
  return { seconds, peakBytes: peak };
}

function child(cmd: string, args: string[], what: string): Side & { version?: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${what} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** PyTorch's side of one case, in a fresh Python process. */
const runTorch = (c: Case): Side => child(lib.python!, [join(import.meta.dirname, 'bench_torch.py'), JSON.stringify(c)], `PyTorch side of '${c.name}'`);

/** Whether a package is installed where this script would import it from (a checkout's or an app's node_modules). */
function resolvable(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}

let onnxVersion: string | undefined;
/** onnxruntime-node's side of an inference case (always float32: its CPU provider has no bf16 convolutions), in a fresh Node process. */
function runOnnx(c: Case): Side {
  const spec = { onnx: c.onnx, batch: c.batch, size: c.size, threads: c.threads, iters: c.iters, warmup: c.warmup };
  const script = import.meta.url.endsWith('.ts') ? ['--import', 'tsx', join(import.meta.dirname, 'bench_onnx.ts')] : [join(import.meta.dirname, 'bench_onnx.js')];
  const r = child(process.execPath, [...script, JSON.stringify(spec)], `onnxruntime side of '${c.name}'`);
  onnxVersion = r.version;
  return r;
}

const list = cases();
attachWeights(list);
if (withOnnx && list.some((c) => c.kind === 'infer') && !resolvable('onnxruntime-node')) {
  console.error('bench: onnxruntime-node is not installed (a checkout\'s npm ci installs it as a devDependency; in an app: npm install --save-dev onnxruntime-node); use --no-onnx to leave it out');
  process.exit(2);
}
const load0 = loadavg();
const info = cpuInfo();
console.log(`resnet-ts bench: libtorch ${torchVersion()} (${lib.how}), device ${device}, ${o.threads} threads, ${o.rounds} rounds${o.quick ? ', quick' : ''}`);
console.log(`CPU: ${describeCpu(info)}; load average ${load0.map((v) => v.toFixed(2)).join(' ')}`);
// Which kernels the planned convolutions run here (null: not planned, libtorch's oneDNN runs them).
const kernels = onCuda ? null : probeKernels();
if (kernels) console.log(`oneDNN kernels (planned, a resnet50 1x1 layer): ${describeKernels(kernels)}`);
else if (!onCuda) console.log('oneDNN kernels: convolutions not planned (no system oneDNN in the addon, or RESNET_TS_DNNL=0): libtorch\'s oneDNN runs them');
if (list.some((c) => c.amp) && !onCuda && !bf16Pays(info)) {
  console.log('note: this CPU has neither AVX512-BF16 nor AMX, so the bf16 cases run emulated and are expected to be slower than float32');
}

const rows: Row[] = [];
const started = Date.now();
for (const c of list) {
  const byRound = { ours: [] as number[][], pytorch: [] as number[][], onnx: [] as number[][] };
  const peaks = { ours: 0, pytorch: 0, onnx: 0 };
  const onnx = withOnnx && c.kind === 'infer';
  for (let r = 0; r < o.rounds; r++) {
    const record = (k: keyof typeof byRound, s: Side): void => {
      byRound[k].push(s.seconds);
      peaks[k] = Math.max(peaks[k], s.peakBytes);
    };
    record('ours', runOurs(c));
    record('pytorch', runTorch(c));
    if (onnx) record('onnx', runOnnx(c));
  }
  const micro = c.kind === 'micro';
  const unit = micro ? 'ns/op' : 'ms/batch';
  const scale = micro ? 1e9 : 1e3;
  const inUnit = (rounds: number[][]): number[][] => rounds.map((r) => r.map((v) => Number((v * scale).toPrecision(5))));
  const [a, b] = [median(byRound.ours.flat()), median(byRound.pytorch.flat())];
  const ort = onnx ? median(byRound.onnx.flat()) : null;
  const row: Row = {
    case: c.name, unit, ours: a * scale, pytorch: b * scale, onnxruntime: ort === null ? null : ort * scale,
    vsPytorch: a / b, vsOnnxruntime: ort === null ? null : a / ort,
    oursPeakBytes: peaks.ours, pytorchPeakBytes: peaks.pytorch, onnxruntimePeakBytes: onnx ? peaks.onnx : null,
    samples: {
      ours: inUnit(byRound.ours), pytorch: inUnit(byRound.pytorch), onnxruntime: onnx ? inUnit(byRound.onnx) : null,
    },
  };
  rows.push(row);
  const f = (v: number | null, d = 2): string => (v === null ? '-' : v.toFixed(d));
  console.log(`  ${row.case.padEnd(34)} ours ${f(row.ours).padStart(9)} ${unit}  pytorch ${f(row.pytorch).padStart(9)}  onnxruntime ${f(row.onnxruntime).padStart(9)}   ours/pytorch ${f(row.vsPytorch, 3)}  ours/onnxruntime ${f(row.vsOnnxruntime, 3)}`);
}
const load1 = loadavg();

const mib = (v: number | null): string => (v === null ? '-' : (v / 2 ** 20).toFixed(0));
console.log(`\nload average at the end: ${load1.map((v) => v.toFixed(2)).join(' ')}; ${((Date.now() - started) / 60_000).toFixed(1)} min`);
console.log('\n| case | unit | resnet-ts | PyTorch | onnxruntime-node | ours/PyTorch | ours/onnxruntime | peak MiB ours / PyTorch / onnxruntime |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const f = (v: number | null, d = 2): string => (v === null ? '-' : v.toFixed(d));
  console.log(`| ${r.case} | ${r.unit} | ${f(r.ours)} | ${f(r.pytorch)} | ${f(r.onnxruntime)} | ${f(r.vsPytorch, 3)} | ${f(r.vsOnnxruntime, 3)} | ${mib(r.oursPeakBytes)} / ${mib(r.pytorchPeakBytes)} / ${mib(r.onnxruntimePeakBytes)} |`);
}
writeFileSync(o.output, JSON.stringify({
  date: new Date().toISOString(), device, threads: o.threads, rounds: o.rounds, torch: torchVersion(), onnxruntime: onnxVersion ?? null,
  cpu: { ...info, description: describeCpu(info) }, kernels, loadAverage: { start: load0, end: load1 }, rows,
}, null, 2));
console.log(`\nwrote ${o.output}`);
