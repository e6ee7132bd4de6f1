// npm run bench: the same work in resnet-ts, in PyTorch (the Python of the very torch build the addon links)
// and in onnxruntime-node, alternating rounds in one run, medians and the time ratios ours/PyTorch and
// ours/onnxruntime. Inference runs inference.optimize()'s fused model on the torchvision oracle's weights,
// which PyTorch loads too and onnxruntime runs as the oracle's ONNX export. Writes bench.json.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { commandName, positiveInt as int } from './cli.ts';
import {
  F, cuda, inference, io, isDevice, models, noGrad, ones, optim, randint, randn, setNumThreads, tidy, torchVersion, withAmp,
  type Device,
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
  /** Round by round, our median over the peer's (the sides' turns in a round are seconds apart). */
  roundRatios: { pytorch: number[]; onnxruntime: number[] | null };
  /**
   * Our fastest iteration over the peer's: on a shared host, where a slow stretch moves the medians, what each side
   * does in its quietest moments (the turns alternate, so each side had the same chances of one).
   */
  bestRatios: { pytorch: number; onnxruntime: number | null };
  /** Every side's turns in the order they ran: when each began and ended (ms since the epoch, from the system clock as that side read it). */
  turns: { side: 'ours' | 'pytorch' | 'onnxruntime'; round: number; span: [number, number] }[];
}

const program = new Command(commandName('bench'))
  .description('Benchmark resnet-ts against PyTorch (same libtorch build) and onnxruntime-node in the same run')
  .option('--quick', 'a short CPU run (small batches and images)', false)
  .option('--micro', 'only the per-op overhead case', false)
  .option('--device <device>', 'cpu or cuda', 'cpu')
  .option('--cuda-graph', 'CUDA: also time each training case with the CUDA-graph step (vs PyTorch eager)', false)
  .option('--rounds <n>', 'alternating rounds per case', int, 3)
  .option('--threads <n>', 'intra-op threads for every side', int, Math.min(cpus().length, 16))
  .option('--cases <list>', 'comma-separated case-name prefixes to run, a trailing $ for the whole name (default: all)')
  .option('--no-onnx', 'leave onnxruntime-node out')
  .option('--emulate-avx2', 'hide AVX-512 and AMX from every side (cpuid trapped by scripts/cpuid-mask.c; x86-64 Linux with CPUID faulting, and cc): the kernels an AVX2-only CPU runs', false)
  .option('--weights-dir <dir>', 'where the oracle\'s weights and ONNX exports are kept between runs', 'runs/bench-weights')
  .option('--output <file>', 'where to write the JSON results', 'bench.json')
  .addHelpText('after', '\nThe HTTP serving benchmark is `resnet-ts bench --serve` (npm run bench:serve); `resnet-ts bench --serve --help` lists its flags.')
  .showHelpAfterError();
program.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
program.parse();
const o = program.opts<{ quick: boolean; micro: boolean; device: string; cudaGraph: boolean; rounds: number; threads: number; cases?: string; onnx: boolean; emulateAvx2: boolean; weightsDir: string; output: string }>();
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
const emulated = process.env.RESNET_TS_CPUID_MASK === 'avx2';
if (o.emulateAvx2 && !emulated) {
  if (onCuda) {
    console.error('bench: --emulate-avx2 applies to the CPU cases (--device cpu)');
    process.exit(2);
  }
  // The whole bench runs again with the shim preloaded: this process (ours), and the peers it starts, inherit it.
  const so = cpuidMask();
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit', env: { ...process.env, RESNET_TS_CPUID_MASK: 'avx2', LD_PRELOAD: [so, process.env.LD_PRELOAD].filter(Boolean).join(':') },
  });
  process.exit(r.status ?? 1);
}

/** scripts/cpuid-mask.c built once (by content) into the temp directory; exits with a usage error where it cannot work. */
function cpuidMask(): string {
  const fail = (why: string): never => {
    console.error(`bench: --emulate-avx2 ${why}`);
    process.exit(2);
  };
  if (process.platform !== 'linux' || process.arch !== 'x64') fail('needs x86-64 Linux');
  if (!cpuInfo().cpuidFault) fail('needs CPUID faulting (the cpuid_fault flag of /proc/cpuinfo), which this CPU or hypervisor does not offer');
  const src = join(import.meta.dirname, 'cpuid-mask.c');
  const text = readFileSync(src);
  const so = join(tmpdir(), `resnet-ts-cpuid-mask-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.so`);
  if (existsSync(so)) return so;
  const part = `${so}.${process.pid}`;
  const cc = spawnSync(process.env.CC ?? 'cc', ['-O2', '-shared', '-fPIC', '-o', part, src, '-ldl'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) fail(`could not compile ${src} (needs a C compiler, cc or $CC): ${cc.error?.message ?? cc.stderr}`);
  renameSync(part, so);
  return so;
}
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
  // Training steps are timed 6 to a side's turn (3 with --quick), after 2 warm-up steps at set-up (1) and one untimed
  // step at the start of every turn.
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
  return only ? list.filter((c) => only.some((n) => (n.endsWith('$') ? c.name === n.slice(0, -1) : c.name.startsWith(n)))) : list;
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

const round1 = (v: number): number => Math.round(v * 10) / 10;

/** "lo-hi" of a list of ratios. */
const range = (xs: number[]): string => `${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)}`;

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

/** One side's turn: the timed iterations in seconds, and when the turn began and ended (ms since the epoch, by its own clock reading). */
interface Turn { seconds: number[]; span: [number, number] }

/**
 * One side of a case, set up once and timed round by round: time(n) runs one untimed step (the caches and threads
 * the other sides just used are back to this one) and then n timed ones, in seconds each (per call for micro);
 * end() frees it and reports the case's peak memory.
 */
interface Contender {
  time(n: number): Promise<Turn>;
  end(): Promise<number>;
}

/** Our side of one case, in this process. */
function ours(c: Case): Contender {
  setNumThreads(c.threads);
  resetPeak();
  const timed = (step: () => void, per = 1): Contender['time'] => async (n) => {
    const t0 = Date.now();
    step();
    sync();
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      step();
      sync();
      out.push(Number(process.hrtime.bigint() - t) / 1e9 / per);
    }
    return { seconds: out, span: [t0, Date.now()] };
  };
  if (c.kind === 'micro') {
    const x = ones([1], { device: c.device });
    for (let i = 0; i < 1000; i++) x.add(x).dispose();
    const time = timed(() => {
      for (let i = 0; i < c.calls; i++) x.add(x).dispose();
    }, c.calls);
    return { time, end: async () => (x.dispose(), peakBytes()) };
  }
  const model = models.create(c.model!, {});
  if (c.weights) {
    const sd = io.loadPth(c.weights);
    model.loadStateDict(sd);
    for (const t of Object.values(sd)) t.dispose();
  }
  model.to(c.device);
  const x = randn([c.batch, 3, c.size, c.size], { device: c.device });
  const owned: { dispose(): void }[] = [x, model];
  let step: () => void;
  if (c.kind === 'infer') {
    const net = inference.optimize(model.eval(), { amp: c.amp });
    owned.push(net);
    step = () => tidy(() => void noGrad(() => net.forward(x)));
  } else {
    if (c.channelsLast) model.toChannelsLast();
    const input = c.channelsLast ? x.contiguous('channelsLast') : x;
    const y = randint(0, 1000, [c.batch], { device: c.device });
    const amp = <T>(fn: () => T): T => withAmp(c.amp, c.device, fn);
    model.train();
    const sgd = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
    owned.push(y, ...(input !== x ? [input] : []), { dispose: () => sgd.dispose?.() });
    // The graph step as fit() runs it: replay, then the loss read back and the eager optimizer step.
    const graph = c.cudaGraph ? graphStep({ model, optimizer: sgd, labelSmoothing: 0, amp: c.amp, device: c.device }) : undefined;
    step = graph ? () => void graph({ x: input, y }, (l) => l) : () =>
      tidy(() => {
        sgd.zeroGrad();
        const loss = amp(() => F.crossEntropy(model.forward(input), y));
        loss.backward();
        sgd.step();
      });
  }
  for (let i = 0; i < c.warmup; i++) step();
  sync();
  return {
    time: timed(step),
    end: async () => {
      const peak = peakBytes();
      for (const o of owned.reverse()) o.dispose();
      return peak;
    },
  };
}

/**
 * A peer's side of one case in its own process (scripts/bench_torch.py, scripts/bench_onnx.ts), which sets the case
 * up once, answers {"ready": ...}, then one JSON line per command: `time N` -> {"seconds": [...], "span": [t0, t1]},
 * `end` -> {"peakBytes": N}.
 */
class Peer implements Contender {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  #wake: (() => void) | null = null;
  #stderr = '';
  #exit: string | null = null;

  constructor(cmd: string, args: string[], readonly what: string) {
    this.#proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.#proc.stdout }).on('line', (l) => {
      this.#lines.push(l);
      this.#wake?.();
    });
    this.#proc.stderr.on('data', (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-20_000)));
    this.#proc.on('close', (code, signal) => {
      this.#exit = signal ? `killed by ${signal}` : `exit code ${code}`;
      this.#wake?.();
    });
    this.#proc.on('error', (e) => {
      this.#exit = e.message;
      this.#wake?.();
    });
  }

  /** The next JSON line the peer writes (lines that are not JSON objects, a library's chatter, are skipped). */
  async reply(): Promise<Record<string, unknown>> {
    for (;;) {
      const line = this.#lines.shift();
      if (line !== undefined) {
        if (!line.startsWith('{')) continue;
        return JSON.parse(line) as Record<string, unknown>;
      }
      if (this.#exit !== null) throw new Error(`${this.what} failed (${this.#exit}):\n${this.#stderr}`);
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
    }
  }

  async time(n: number): Promise<Turn> {
    this.#proc.stdin.write(`time ${n}\n`);
    const r = await this.reply();
    return { seconds: r.seconds as number[], span: r.span as [number, number] };
  }

  async end(): Promise<number> {
    this.#proc.stdin.end('end\n');
    return (await this.reply()).peakBytes as number;
  }

  kill(): void {
    if (this.#exit === null) this.#proc.kill('SIGKILL');
  }
}

let torchCapability: string | undefined;
/** PyTorch's side of one case; torchCapability: the kernels aten picked in it (torch.backends.cpu.get_cpu_capability()). */
async function torchSide(c: Case): Promise<Peer> {
  const p = new Peer(lib.python!, [join(import.meta.dirname, 'bench_torch.py'), JSON.stringify(c)], `PyTorch side of '${c.name}'`);
  torchCapability = (await p.reply()).capability as string | undefined;
  return p;
}

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
/** onnxruntime-node's side of an inference case (always float32: its CPU provider has no bf16 convolutions). */
async function onnxSide(c: Case): Promise<Peer> {
  const spec = { onnx: c.onnx, batch: c.batch, size: c.size, threads: c.threads, warmup: c.warmup };
  const script = import.meta.url.endsWith('.ts') ? ['--import', 'tsx', join(import.meta.dirname, 'bench_onnx.ts')] : [join(import.meta.dirname, 'bench_onnx.js')];
  const p = new Peer(process.execPath, [...script, JSON.stringify(spec)], `onnxruntime side of '${c.name}'`);
  onnxVersion = (await p.reply()).version as string;
  return p;
}

const list = cases();
// Before attachWeights, which writes the weights files (hundreds of MB) the peers read.
if (withOnnx && list.some((c) => c.kind === 'infer') && !resolvable('onnxruntime-node')) {
  console.error('bench: onnxruntime-node is not installed (a checkout\'s npm ci installs it as a devDependency; in an app: npm install --save-dev onnxruntime-node); use --no-onnx to leave it out');
  process.exit(2);
}
attachWeights(list);
const load0 = loadavg();
const info = cpuInfo();
console.log(`resnet-ts bench: libtorch ${torchVersion()} (${lib.how}), device ${device}, ${o.threads} threads, ${o.rounds} rounds${o.quick ? ', quick' : ''}`);
console.log(`CPU: ${describeCpu(info)}; load average ${load0.map((v) => v.toFixed(2)).join(' ')}`);
if (emulated) console.log('cpuid: AVX-512 and AMX hidden from every side (--emulate-avx2): the kernels an AVX2-only CPU runs, on this CPU\'s cores');
// Which kernels the planned convolutions run here (null: not planned, libtorch's oneDNN runs them).
const kernels = onCuda ? null : probeKernels();
if (kernels) console.log(`oneDNN kernels (planned, a resnet50 1x1 layer): ${describeKernels(kernels)}`);
else if (!onCuda) console.log('oneDNN kernels: convolutions not planned (no system oneDNN in the addon, or RESNET_TS_DNNL=0): libtorch\'s oneDNN runs them');
if (list.some((c) => c.amp) && !onCuda && !bf16Pays(info)) {
  console.log('note: this CPU has neither AVX512-BF16 nor AMX, so the bf16 cases run emulated and are expected to be slower than float32');
}

// Between one side's turn and the next: OpenMP's and onnxruntime's pools spin after their last work before they
// sleep (onnxruntime's two threads took 30 ms of CPU in the 100 ms after a resnet50 batch-16 turn, none after that;
// PyTorch's 10 ms), and a side timed while another's threads still spin on the same cores would be charged for them.
const SETTLE_MS = 100;

const rows: Row[] = [];
const started = Date.now();
for (const c of list) {
  const byRound = { ours: [] as number[][], pytorch: [] as number[][], onnx: [] as number[][] };
  const onnx = withOnnx && c.kind === 'infer';
  // Every side is set up once (ours here, the peers in their own processes, one after another so no set-up overlaps
  // another side's), then the rounds alternate them, each side's turn a few iterations long, the order rotating round
  // by round: a slow stretch of a shared host then falls on all of them alike.
  const sides: [keyof typeof byRound, Contender][] = [];
  const peaks = { ours: 0, pytorch: 0, onnx: 0 };
  const turns: Row['turns'] = [];
  try {
    sides.push(['ours', ours(c)]);
    sides.push(['pytorch', await torchSide(c)]);
    if (onnx) sides.push(['onnx', await onnxSide(c)]);
    for (let r = 0; r < o.rounds; r++) {
      for (let i = 0; i < sides.length; i++) {
        const [k, side] = sides[(r + i) % sides.length]!;
        await sleep(SETTLE_MS);
        const turn = await side.time(c.iters);
        byRound[k].push(turn.seconds);
        turns.push({ side: k === 'onnx' ? 'onnxruntime' : k, round: r, span: [round1(turn.span[0]), round1(turn.span[1])] });
      }
    }
    for (const [k, side] of sides) peaks[k] = await side.end();
  } finally {
    for (const [, side] of sides) if (side instanceof Peer) side.kill();
  }
  const micro = c.kind === 'micro';
  const unit = micro ? 'ns/op' : 'ms/batch';
  const scale = micro ? 1e9 : 1e3;
  const inUnit = (rounds: number[][]): number[][] => rounds.map((r) => r.map((v) => Number((v * scale).toPrecision(5))));
  const [a, b] = [median(byRound.ours.flat()), median(byRound.pytorch.flat())];
  const ort = onnx ? median(byRound.onnx.flat()) : null;
  const perRound = (peer: number[][]): number[] => byRound.ours.map((r, i) => Number((median(r) / median(peer[i]!)).toFixed(3)));
  const best = (peer: number[][]): number => Number((Math.min(...byRound.ours.flat()) / Math.min(...peer.flat())).toFixed(3));
  const row: Row = {
    case: c.name, unit, ours: a * scale, pytorch: b * scale, onnxruntime: ort === null ? null : ort * scale,
    vsPytorch: a / b, vsOnnxruntime: ort === null ? null : a / ort,
    oursPeakBytes: peaks.ours, pytorchPeakBytes: peaks.pytorch, onnxruntimePeakBytes: onnx ? peaks.onnx : null,
    samples: {
      ours: inUnit(byRound.ours), pytorch: inUnit(byRound.pytorch), onnxruntime: onnx ? inUnit(byRound.onnx) : null,
    },
    roundRatios: { pytorch: perRound(byRound.pytorch), onnxruntime: onnx ? perRound(byRound.onnx) : null },
    bestRatios: { pytorch: best(byRound.pytorch), onnxruntime: onnx ? best(byRound.onnx) : null },
    turns,
  };
  rows.push(row);
  const f = (v: number | null, d = 2): string => (v === null ? '-' : v.toFixed(d));
  console.log(`  ${row.case.padEnd(34)} ours ${f(row.ours).padStart(9)} ${unit}  pytorch ${f(row.pytorch).padStart(9)}  onnxruntime ${f(row.onnxruntime).padStart(9)}   ours/pytorch ${f(row.vsPytorch, 3)}  ours/onnxruntime ${f(row.vsOnnxruntime, 3)}` +
    `  (rounds ${onnx ? `${range(row.roundRatios.onnxruntime!)}, fastest ${f(row.bestRatios.onnxruntime, 3)} vs onnxruntime` : `${range(row.roundRatios.pytorch)}, fastest ${f(row.bestRatios.pytorch, 3)} vs pytorch`})`);
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
  cpu: { ...info, description: describeCpu(info) }, emulated: emulated ? 'avx2' : null, pytorchCpuCapability: torchCapability ?? null, kernels, loadAverage: { start: load0, end: load1 }, rows,
}, null, 2));
console.log(`\nwrote ${o.output}`);
