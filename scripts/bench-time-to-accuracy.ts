// Time to accuracy: wall time until a ResNet-20 reaches a Fashion-MNIST test accuracy (92 % by default) with one
// recipe, trained by `npm run train` (resnet-ts) and by scripts/train_torch.py (PyTorch of the very libtorch build
// the addon links), one after the other on the same machine, alternating which goes first from round to round.
// Each side evaluates the whole test set after every epoch and stops at the first epoch that reaches the target;
// the time is the sum of the epochs' training and evaluation seconds as each side measures them (data loading and
// start-up excluded on both). Writes the "timeToAccuracy" key of bench.json and a chart page.
//   npm run bench:time-to-accuracy -- --rounds 1
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { float, int, positiveInt } from './cli.ts';
import { chartBundle, esc, scriptJson } from '../lib/train/html.ts';
import { writeFileAtomically } from '../lib/io/atomic.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Options {
  target: number; epochs: number; depth: number; batchSize: number; lr: number; wd: number; warmup: number; threads: number;
  seed: number; rounds: number; python: string; output: string; html: string; dataDir?: string;
}

/** One epoch of one side: its test accuracy and the seconds it took (training, and training plus evaluation). */
interface Epoch { epoch: number; testAccuracy: number; trainSeconds: number; epochSeconds: number }

/** One side's run. */
interface Side {
  side: 'resnet-ts' | 'PyTorch';
  round: number;
  seed: number;
  epochs: Epoch[];
  /** Seconds of training and evaluation until the target epoch (null: not reached in --epochs). */
  secondsToTarget: number | null;
  epochsToTarget: number | null;
  /** Mean training seconds per epoch. */
  trainSecondsPerEpoch: number;
  /** The process from start to exit, set-up and data loading included; and its CPU seconds (user + system). */
  processSeconds: number;
  cpuSeconds: number;
  loadAverage: [number, number];
}

/** CPU seconds of this process's waited-for children (/proc/self/stat cutime + cstime, in clock ticks of 1/100 s). */
function childCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

const load1 = (): number => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

/** Runs a command until it exits, calling poll every half second; poll returning true stops it with SIGTERM. */
function runUntil(cmd: string, args: string[], env: NodeJS.ProcessEnv, poll: () => boolean): Promise<{ code: number | null; seconds: number; cpu: number; load: [number, number]; log: string }> {
  const cpu0 = childCpuSeconds();
  const t0 = performance.now();
  const startLoad = load1();
  const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  let stopping = false;
  const timer = setInterval(() => {
    if (!stopping && poll()) {
      stopping = true;
      child.kill('SIGTERM');
    }
  }, 500);
  return new Promise((resolve) => child.on('close', (code) => {
    clearInterval(timer);
    resolve({ code, seconds: (performance.now() - t0) / 1000, cpu: childCpuSeconds() - cpu0, load: [startLoad, load1()], log });
  }));
}

/** What both sides share, stated once for the report. */
const recipeText = (o: Options): string =>
  `ResNet-${o.depth} (option A), Fashion-MNIST 60k/10k, batch ${o.batchSize}, SGD momentum 0.9 lr ${o.lr}, ${o.warmup}-epoch linear warm-up from lr/10 ` +
  `then cosine per step over ${o.epochs} epochs, weight decay ${o.wd} (not on BN and biases), random horizontal flips, ${o.threads} threads, ` +
  `test set evaluated after every epoch`;

function summarise(side: Side['side'], round: number, seed: number, epochs: Epoch[], target: number, proc: { seconds: number; cpu: number; load: [number, number] }): Side {
  const at = epochs.findIndex((e) => e.testAccuracy >= target);
  const sum = (n: number): number => epochs.slice(0, n).reduce((a, e) => a + e.epochSeconds, 0);
  return {
    side, round, seed, epochs, secondsToTarget: at < 0 ? null : Number(sum(at + 1).toFixed(2)), epochsToTarget: at < 0 ? null : at + 1,
    trainSecondsPerEpoch: Number((epochs.reduce((a, e) => a + e.trainSeconds, 0) / Math.max(1, epochs.length)).toFixed(2)),
    processSeconds: Number(proc.seconds.toFixed(1)), cpuSeconds: Number(proc.cpu.toFixed(1)), loadAverage: proc.load,
  };
}

/** resnet-ts: `scripts/train.ts` with the recipe, stopped (SIGTERM) once an epoch record reaches the target. */
async function ours(o: Options, round: number, seed: number, dir: string): Promise<Side> {
  const out = join(dir, `resnet-ts-${round}`);
  const metrics = join(out, 'metrics.jsonl');
  const epochs = (): Epoch[] => (existsSync(metrics) ? readFileSync(metrics, 'utf8').split('\n').filter((l) => l.includes('"kind":"epoch"')) : [])
    .map((l) => JSON.parse(l) as { epoch: number; testTop1: number; imagesPerSec: number; epochTime: number })
    // metrics.jsonl has the epoch's seconds with evaluation and its training throughput: 60,000 images (468 full batches).
    .map((r) => ({ epoch: r.epoch + 1, testAccuracy: r.testTop1, trainSeconds: Number(((468 * o.batchSize) / r.imagesPerSec).toFixed(3)), epochSeconds: r.epochTime }));
  const args = ['--import', 'tsx', join(root, 'scripts', 'train.ts'), '--model', `resnet${o.depth}`, '--epochs', String(o.epochs), '--batch-size', String(o.batchSize),
    '--lr', String(o.lr), '--schedule', 'cosine', '--warmup', String(o.warmup), '--wd', String(o.wd), '--augment', 'flip', '--threads', String(o.threads),
    '--seed', String(seed), '--out', out, '--quiet', ...(o.dataDir ? ['--data-dir', o.dataDir] : [])];
  const r = await runUntil(process.execPath, args, process.env, () => epochs().some((e) => e.testAccuracy >= o.target));
  if (r.code !== 0 && r.code !== 143) throw new Error(`resnet-ts training failed (exit ${r.code}):\n${r.log}`);
  return summarise('resnet-ts', round, seed, epochs(), o.target, r);
}

/** PyTorch: scripts/train_torch.py with the same recipe and --target. */
async function torch(o: Options, round: number, seed: number, dir: string): Promise<Side> {
  const out = join(dir, `torch-${round}.json`);
  const args = [join(root, 'scripts', 'train_torch.py'), '--depth', String(o.depth), '--epochs', String(o.epochs), '--batch-size', String(o.batchSize),
    '--lr', String(o.lr), '--wd', String(o.wd), '--no-decay-bn-bias', '--warmup', String(o.warmup), '--flip', '--threads', String(o.threads),
    '--seed', String(seed), '--target', String(o.target), '--output', out, ...(o.dataDir ? ['--data-dir', o.dataDir] : [])];
  const r = await runUntil(o.python, args, process.env, () => false);
  if (r.code !== 0) throw new Error(`PyTorch training failed (exit ${r.code}):\n${r.log}`);
  const res = JSON.parse(readFileSync(out, 'utf8')) as { history: Epoch[] };
  return summarise('PyTorch', round, seed, res.history, o.target, r);
}

function cpuModel(): string {
  try {
    return /^Model name:\s*(.+)$/m.exec(execFileSync('lscpu', { encoding: 'utf8' }))?.[1]?.trim() ?? 'unknown CPU';
  } catch {
    return 'unknown CPU';
  }
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The chart page: each run's test accuracy against its cumulative seconds, with the target as a line. */
function writeHtml(path: string, result: { cpu: string; date: string; recipe: string; target: number; runs: Side[] }): void {
  const colours = { 'resnet-ts': 'rgb(31, 119, 180)', PyTorch: 'rgb(255, 127, 14)' };
  const datasets = result.runs.map((r) => {
    let t = 0;
    return {
      label: `${r.side} (round ${r.round}, seed ${r.seed})`, borderColor: colours[r.side], backgroundColor: colours[r.side], borderWidth: 3, pointRadius: 4,
      data: r.epochs.map((e) => ({ x: (t += e.epochSeconds), y: 100 * e.testAccuracy })),
    };
  });
  const span = Math.max(...result.runs.map((r) => r.epochs.reduce((a, e) => a + e.epochSeconds, 0)));
  datasets.push({ label: `target ${100 * result.target} %`, borderColor: 'rgb(120, 120, 120)', backgroundColor: 'rgb(120, 120, 120)', borderWidth: 1.5, pointRadius: 0, data: [{ x: 0, y: 100 * result.target }, { x: span, y: 100 * result.target }] });
  const rows = result.runs.map((r) => `<tr><td>${r.round}</td><td>${esc(r.side)}</td><td class="num">${r.secondsToTarget === null ? 'not reached' : `${r.secondsToTarget.toFixed(1)} s`}</td>` +
    `<td class="num">${r.epochsToTarget ?? '–'}</td><td class="num">${r.trainSecondsPerEpoch.toFixed(1)} s</td><td class="num">${r.epochs.map((e) => (100 * e.testAccuracy).toFixed(2)).join(', ')}</td></tr>`).join('');
  writeFileAtomically(path, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Time to ${100 * result.target} % on Fashion-MNIST</title>
<style>body{font:14px system-ui,sans-serif;margin:20px;color:#222;max-width:1000px}h1{font-size:20px;margin:0 0 4px}.sub{color:#555;margin-bottom:8px}
table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}td.num{text-align:right}</style>
<script>${chartBundle()}</script></head>
<body><h1>Time to ${100 * result.target} % Fashion-MNIST test accuracy: resnet-ts vs PyTorch</h1>
<div class="sub">${esc(`${result.cpu} · ${result.date.slice(0, 10)} · ${result.recipe}`)}</div>
<canvas id="acc" width="960" height="420"></canvas>
<table><tr><th>round</th><th>side</th><th>time to target</th><th>epochs</th><th>training s / epoch</th><th>test accuracy per epoch (%)</th></tr>${rows}</table>
<script>
new Chart(document.getElementById('acc'), {
  type: 'line', data: { datasets: ${scriptJson(datasets)} },
  options: { animation: false, responsive: false, scales: { x: { type: 'linear', title: { display: true, text: 'seconds (training + evaluation)' } }, y: { title: { display: true, text: 'test accuracy (%)' } } } },
});
</script></body></html>
`);
}

async function main(): Promise<void> {
  const program = new Command('bench-time-to-accuracy')
    .description('Wall time to a Fashion-MNIST test accuracy, resnet-ts (npm run train) vs PyTorch (scripts/train_torch.py), same recipe, one after the other; writes the "timeToAccuracy" key of bench.json.')
    .option('--target <x>', 'test accuracy to reach, as a fraction', float(0), 0.92)
    .option('--epochs <n>', 'length of the cosine schedule; each side stops at the first epoch reaching --target', positiveInt, 5)
    .option('--depth <n>', 'ResNet 6n+2 depth', positiveInt, 20)
    .option('--batch-size <n>', 'training batch size', positiveInt, 128)
    .option('--lr <x>', 'peak learning rate', float(0), 0.1)
    .option('--wd <x>', 'weight decay (not on BN weights and biases)', float(0), 5e-4)
    .option('--warmup <epochs>', 'linear warm-up epochs', float(0), 0.2)
    .option('--threads <n>', 'CPU threads of each side', positiveInt, availableParallelism())
    .option('--seed <n>', 'seed of round 1 (round k uses seed + k - 1 on both sides)', int(0), 0)
    .option('--rounds <n>', 'rounds; odd rounds run resnet-ts first, even ones PyTorch first', positiveInt, 1)
    .option('--python <path>', 'Python with the torch the addon links', join(root, '.venv', 'bin', 'python'))
    .option('--data-dir <dir>', 'Fashion-MNIST files (default: Debian\'s /usr/share/datasets/fashion-mnist)')
    .option('--output <file>', 'JSON file to write (its "timeToAccuracy" key; other keys are kept)', 'bench.json')
    .option('--html <file>', 'chart page to write', 'time-to-accuracy.html')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError();
  program.parse(process.argv);
  const o = program.opts<Options>();
  if (o.target >= 1) {
    process.stderr.write('bench-time-to-accuracy: --target is a fraction below 1 (e.g. 0.92)\n');
    process.exit(2);
  }
  if (!existsSync(o.python)) {
    process.stderr.write(`bench-time-to-accuracy: no Python at ${o.python} (run npm run setup, or give --python)\n`);
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'time-to-accuracy-'));
  const runs: Side[] = [];
  try {
    for (let round = 1; round <= o.rounds; round++) {
      const seed = o.seed + round - 1;
      const order = round % 2 ? [ours, torch] : [torch, ours];
      for (const side of order) {
        console.log(`round ${round}: ${side === ours ? 'resnet-ts' : 'PyTorch'} (seed ${seed}, load average ${load1()}) ...`);
        const r = await side(o, round, seed, dir);
        runs.push(r);
        console.log(`  ${r.side}: ${r.secondsToTarget === null ? `did not reach ${100 * o.target} % in ${o.epochs} epochs` : `${100 * o.target} % after epoch ${r.epochsToTarget}, ${r.secondsToTarget.toFixed(1)} s`}` +
          ` (test accuracy per epoch ${r.epochs.map((e) => (100 * e.testAccuracy).toFixed(2)).join(', ')} %; ${r.trainSecondsPerEpoch.toFixed(1)} s training per epoch; ` +
          `process ${r.processSeconds} s wall, ${r.cpuSeconds} s CPU)`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const of = (side: Side['side']) => runs.filter((r) => r.side === side);
  const reached = (rs: Side[]) => rs.flatMap((r) => (r.secondsToTarget === null ? [] : [r.secondsToTarget]));
  const [a, b] = [reached(of('resnet-ts')), reached(of('PyTorch'))];
  const perEpoch = median(of('resnet-ts').map((r) => r.trainSecondsPerEpoch)) / median(of('PyTorch').map((r) => r.trainSecondsPerEpoch));
  const result = {
    date: new Date().toISOString(), cpu: cpuModel(), node: process.version, recipe: recipeText(o), target: o.target, runs,
    medianSecondsToTarget: { 'resnet-ts': a.length ? median(a) : null, PyTorch: b.length ? median(b) : null },
    ratio: a.length && b.length ? Number((median(a) / median(b)).toFixed(3)) : null,
    trainSecondsPerEpochRatio: Number(perEpoch.toFixed(3)),
  };
  const prev = existsSync(o.output) ? JSON.parse(readFileSync(o.output, 'utf8')) : {};
  writeFileSync(o.output, `${JSON.stringify({ ...prev, timeToAccuracy: result }, null, 2)}\n`);
  writeHtml(o.html, result);
  console.log(`\n${result.cpu}, ${result.date.slice(0, 10)}; ${result.recipe}\n`);
  console.log('| round | side | time to target | epochs | training s / epoch | process wall / CPU s | load average (start, end) |\n|---:|---|---:|---:|---:|---:|---|');
  for (const r of runs) {
    console.log(`| ${r.round} | ${r.side} | ${r.secondsToTarget === null ? 'not reached' : `${r.secondsToTarget.toFixed(1)} s`} | ${r.epochsToTarget ?? '–'} | ${r.trainSecondsPerEpoch.toFixed(1)} | ` +
      `${r.processSeconds} / ${r.cpuSeconds} | ${r.loadAverage.join(', ')} |`);
  }
  console.log(`\nmedian time to ${100 * o.target} %: resnet-ts ${result.medianSecondsToTarget['resnet-ts'] ?? 'not reached'} s, PyTorch ${result.medianSecondsToTarget.PyTorch ?? 'not reached'} s` +
    `${result.ratio !== null ? ` (ratio ${result.ratio})` : ''}; training time per epoch ratio ${result.trainSecondsPerEpochRatio}`);
  console.log(`wrote ${o.output} ("timeToAccuracy") and ${o.html}`);
}

main().catch((e: Error) => {
  console.error(`bench-time-to-accuracy: ${e.message}`);
  process.exit(1);
});
