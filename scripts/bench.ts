// npm run bench: the same work in resnet-ts and in PyTorch (the Python of the very torch build the
// addon links), alternating rounds, medians and the ratio ours/PyTorch. Writes bench.json.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { positiveInt as int } from './cli.ts';
import {
  F, cuda, isDevice, models, noGrad, ones, optim, randint, randn, setNumThreads, tidy, torchVersion,
  withAmp, type Device, type Tensor,
} from '../lib/index.ts';

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
}

interface Row {
  case: string;
  unit: string;
  ours: number;
  pytorch: number;
  ratio: number;
  oursPeakBytes: number;
  pytorchPeakBytes: number;
}

const program = new Command('bench')
  .description('Benchmark resnet-ts against PyTorch (same libtorch build) in the same run')
  .option('--quick', 'a short CPU run (small batches and images)', false)
  .option('--micro', 'only the per-op overhead case', false)
  .option('--device <device>', 'cpu or cuda', 'cpu')
  .option('--rounds <n>', 'alternating rounds per case', int, 3)
  .option('--threads <n>', 'intra-op threads for both sides', int, Math.min(cpus().length, 16))
  .option('--cases <list>', 'comma-separated case names to run (default: all)')
  .option('--output <file>', 'where to write the JSON results', 'bench.json')
  .showHelpAfterError();
program.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
program.parse();
const o = program.opts<{ quick: boolean; micro: boolean; device: string; rounds: number; threads: number; cases?: string; output: string }>();
if (!isDevice(o.device)) {
  console.error(`error: option '--device <device>' must be cpu or cuda; got ${o.device}`);
  process.exit(2);
}
const device = o.device as Device;
const onCuda = device.startsWith('cuda');
const lib = JSON.parse(execFileSync(process.execPath, [join(import.meta.dirname, 'libtorch.mjs'), '--json'], { encoding: 'utf8' })) as { python?: string; how: string };
if (!lib.python) {
  console.error('bench: the libtorch in use has no Python beside it (LIBTORCH=...); PyTorch cannot be timed');
  process.exit(2);
}

function cases(): Case[] {
  const base = { iters: o.quick ? 3 : 5, warmup: 1, calls: 100_000, threads: o.threads, device };
  const list: Case[] = [{ ...base, name: 'add 1-element (per op)', kind: 'micro', batch: 1, size: 1, iters: 5 }];
  if (o.micro) return list;
  const big = o.quick ? { b: 8, s: 112 } : { b: 64, s: 224 };
  const trainB = o.quick ? { b: 8, s: 112 } : { b: onCuda ? 256 : 32, s: 224 };
  for (const m of ['resnet50', 'resnext50_32x4d']) {
    list.push({ ...base, name: `${m} infer b1`, kind: 'infer', model: m, batch: 1, size: o.quick ? 112 : 224 });
    list.push({ ...base, name: `${m} infer b${big.b}`, kind: 'infer', model: m, batch: big.b, size: big.s, iters: o.quick ? 2 : 3 });
  }
  for (const m of ['resnet18', 'resnet50', 'resnext50_32x4d']) {
    list.push({ ...base, name: `${m} train b${trainB.b}`, kind: 'train', model: m, batch: trainB.b, size: trainB.s, iters: o.quick ? 2 : 3 });
  }
  if (onCuda) {
    list.push({ ...base, name: 'resnet50 train b256 bf16 channels-last', kind: 'train', model: 'resnet50', batch: 256, size: 224, amp: 'bf16', channelsLast: true, iters: 10, warmup: 3 });
  }
  const only = o.cases?.split(',').map((s) => s.trim());
  return only ? list.filter((c) => only.some((n) => c.name.startsWith(n))) : list;
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
 * mark is reset (Linux /proc/self/clear_refs) and the current RSS taken as the base, so both sides
 * report the memory a case added, not the interpreter's own (bench_torch.py does the same).
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

/** Times our side of one case: seconds per iteration (per call for micro). */
function runOurs(c: Case): number[] {
  setNumThreads(c.threads);
  resetPeak();
  if (c.kind === 'micro') {
    const x = ones([1], { device: c.device });
    const out: number[] = [];
    for (let i = 0; i < 1000; i++) x.add(x).dispose();
    for (let r = 0; r < c.iters; r++) {
      const t = process.hrtime.bigint();
      for (let i = 0; i < c.calls; i++) x.add(x).dispose();
      out.push(Number(process.hrtime.bigint() - t) / 1e9 / c.calls);
    }
    x.dispose();
    return out;
  }
  const model = models.create(c.model!, {});
  model.to(c.device);
  if (c.channelsLast) model.toChannelsLast();
  const x = tidy(() => {
    const r = randn([c.batch, 3, c.size, c.size], { device: c.device });
    return c.channelsLast ? r.contiguous('channelsLast') : r;
  });
  const y = randint(0, 1000, [c.batch], { device: c.device });
  const amp = <T>(fn: () => T): T => withAmp(c.amp, c.device, fn);
  let step: () => void;
  let opt: optim.SGD | undefined;
  if (c.kind === 'infer') {
    model.eval();
    step = () => tidy(() => void noGrad(() => amp(() => model.forward(x))));
  } else {
    model.train();
    opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
    const sgd = opt;
    step = () =>
      tidy(() => {
        sgd.zeroGrad();
        const loss = amp(() => F.crossEntropy(model.forward(x), y));
        loss.backward();
        sgd.step();
      });
  }
  for (let i = 0; i < c.warmup; i++) step();
  sync();
  const out: number[] = [];
  for (let r = 0; r < c.iters; r++) {
    const t = process.hrtime.bigint();
    step();
    sync();
    out.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  const dispose = (ts: Iterable<Tensor>): void => { for (const t of ts) t.dispose(); };
  dispose([x, y]);
  opt?.dispose?.();
  model.dispose?.();
  return out;
}

/** Times PyTorch's side of one case in a fresh Python process. */
function runTorch(c: Case): { seconds: number[]; peakBytes: number } {
  const r = spawnSync(lib.python!, [join(import.meta.dirname, 'bench_torch.py'), JSON.stringify(c)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`PyTorch side of '${c.name}' failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const rows: Row[] = [];
console.log(`resnet-ts bench: libtorch ${torchVersion()} (${lib.how}), device ${device}, ${o.threads} threads, ${o.rounds} rounds${o.quick ? ', quick' : ''}`);
for (const c of cases()) {
  const ours: number[] = [];
  const theirs: number[] = [];
  let ourPeak = 0;
  let theirPeak = 0;
  for (let r = 0; r < o.rounds; r++) {
    ours.push(...runOurs(c));
    ourPeak = Math.max(ourPeak, peakBytes());
    const t = runTorch(c);
    theirs.push(...t.seconds);
    theirPeak = Math.max(theirPeak, t.peakBytes);
  }
  const micro = c.kind === 'micro';
  const scale = micro ? 1e9 : c.kind === 'infer' && c.batch === 1 ? 1e3 : 1;
  const unit = micro ? 'ns/op' : c.kind === 'infer' && c.batch === 1 ? 'ms/batch' : 'img/s';
  const a = median(ours);
  const b = median(theirs);
  const value = (s: number): number => (unit === 'img/s' ? c.batch / s : s * scale);
  rows.push({ case: c.name, unit, ours: value(a), pytorch: value(b), ratio: a / b, oursPeakBytes: ourPeak, pytorchPeakBytes: theirPeak });
  const row = rows[rows.length - 1]!;
  console.log(`  ${row.case.padEnd(42)} ours ${row.ours.toFixed(2).padStart(10)} ${unit.padEnd(8)} pytorch ${row.pytorch.toFixed(2).padStart(10)}   time ratio ${row.ratio.toFixed(3)}`);
}

console.log('\n| case | unit | resnet-ts | PyTorch | time ratio (ours/PyTorch) | peak mem ours / PyTorch (MiB) |');
console.log('|---|---|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.case} | ${r.unit} | ${r.ours.toFixed(2)} | ${r.pytorch.toFixed(2)} | ${r.ratio.toFixed(3)} | ${(r.oursPeakBytes / 2 ** 20).toFixed(0)} / ${(r.pytorchPeakBytes / 2 ** 20).toFixed(0)} |`);
}
writeFileSync(o.output, JSON.stringify({ date: new Date().toISOString(), device, threads: o.threads, torch: torchVersion(), cpu: cpus()[0]?.model, rows }, null, 2));
console.log(`\nwrote ${o.output}`);
