// resnet-ts bench --serve: `resnet-ts serve` under load from autocannon on loopback, with dynamic batching
// on (--max-batch 32) and off (--max-batch 1), alternating at 1, 8 and 32 concurrent clients. Reports
// images/s, p50/p99 latency, the mean batch size and the server's event-loop delay p99 (prom-client's
// monitorEventLoopDelay, reset by each /metrics scrape, so one scrape before and one after a case bound it).
//   npm run bench:serve -- --model resnet50 --duration 15
import './omp-passive.ts'; // first: before the addon (and its libgomp) loads
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Result as LoadResult } from 'autocannon';
import { Command, Option } from 'commander';
import sharp from 'sharp';
import { session } from '../lib/inference/index.ts';
import { io, models, randn, torchVersion } from '../lib/index.ts';
import type { Module } from '../lib/nn/module.ts';
import { commandName, ints, positiveInt } from './cli.ts';

const here = dirname(fileURLToPath(import.meta.url));
// The serve script beside this one: TypeScript through tsx in the repository, compiled JS in a package.
const serveArgs = import.meta.url.endsWith('.ts') ? ['--import', 'tsx', join(here, 'serve.ts')] : [join(here, 'serve.js')];
// autocannon is a devDependency (the benchmark's load generator, not part of the library an app runs),
// so it is imported once arguments are parsed: `--help` works without it, and its absence is one message.
let autocannon: typeof import('autocannon') | undefined;
async function loadGenerator(): Promise<void> {
  autocannon = (await import('autocannon').catch(() => {
    console.error('bench --serve: autocannon is not installed; in an app: npm install --save-dev autocannon (a checkout has it after npm ci)');
    process.exit(2);
  })).default;
}

interface Options { model: string; duration: number; maxRequests: number; clients: number[]; threads?: number; amp?: 'bf16' | 'fp16'; output: string; delay: number }
interface Case { batching: 'on' | 'off'; clients: number; imagesPerSecond: number; p50Ms: number; p99Ms: number; meanBatch: number; eventLoopP99Ms: number; ok: number; failed: number }

/** A running server and how to read its metrics. */
interface Server { url: string; proc: ChildProcess; exited: Promise<number | null> }

function start(args: string[]): Promise<Server> {
  const proc = spawn(process.execPath, [...serveArgs, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let out = '';
  return new Promise((resolve, reject) => {
    const read = (d: Buffer): void => {
      out += d.toString();
      const m = /on (http:\/\/\S+\/)/.exec(out);
      if (m) resolve({ url: m[1]!, proc, exited });
    };
    proc.stdout!.on('data', read);
    proc.stderr!.on('data', read);
    void exited.then((code) => reject(new Error(`serve exited (${code}) before listening:\n${out}`)));
  });
}

async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(new URL('metrics', url))).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

function load(url: string, body: Buffer, connections: number, o: Options): Promise<LoadResult> {
  return autocannon!({
    url: new URL('v1/classify', url).href, method: 'POST', body, headers: { 'content-type': 'image/jpeg' },
    connections, duration: o.duration, maxOverallRequests: o.maxRequests, timeout: 60,
  });
}

// autocannon drops its open requests when its time is up; the server still answers them, so the next
// case starts only once it is idle again (at most ten minutes).
async function idle(s: Server): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if ((await scrape(s.url)).get('resnet_ts_requests_in_flight') === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${s.url} did not become idle`);
}

async function measure(s: Server, batching: 'on' | 'off', clients: number, body: Buffer, o: Options): Promise<Case> {
  await idle(s);
  const before = await scrape(s.url); // also resets the event-loop histogram
  const r = await load(s.url, body, clients, o);
  const after = await scrape(s.url);
  const delta = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  return {
    batching, clients, imagesPerSecond: r['2xx'] / r.duration, p50Ms: r.latency.p50, p99Ms: r.latency.p99,
    meanBatch: delta('resnet_ts_batch_size_count') ? delta('resnet_ts_batch_size_sum') / delta('resnet_ts_batch_size_count') : 0,
    eventLoopP99Ms: (after.get('nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000, ok: r['2xx'], failed: r.non2xx + r.errors + r.timeouts,
  };
}

// The model alone in an inference session (the server's Worker, without HTTP, decoding or batching),
// batch 1 against batch n, alternating: the ceiling of what batching can gain on this machine. It runs what
// the server runs: the fused inference copy (serve's default), in the same precision.
async function modelOnly(model: Module, n: number, seconds: number, threads?: number, amp?: 'bf16' | 'fp16'): Promise<{ batch1ImagesPerSecond: number; batchNImagesPerSecond: number; n: number }> {
  const s = await session(model, { threads, maxBatch: n, amp, optimize: true });
  const rate = async (b: number): Promise<number> => {
    const x = randn([b, 3, 224, 224]);
    (await s.run(x)).dispose();
    let images = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < (seconds * 1000) / 6) {
      (await s.run(x)).dispose();
      images += b;
    }
    x.dispose();
    return images / ((performance.now() - t0) / 1000);
  };
  const ones: number[] = [];
  const ns: number[] = [];
  for (let round = 0; round < 3; round++) {
    ones.push(await rate(1));
    ns.push(await rate(n));
  }
  await s.close();
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[1]!;
  return { batch1ImagesPerSecond: median(ones), batchNImagesPerSecond: median(ns), n };
}

// The CPU as lscpu names it (os.cpus() where lscpu is missing).
function cpuModel(): string {
  let name = cpus()[0]?.model ?? 'unknown';
  try {
    name = /^Model name:\s*(.+)$/m.exec(execFileSync('lscpu', { encoding: 'utf8' }))?.[1]?.trim() ?? name;
  } catch {
    // keep os.cpus()'s name
  }
  return `${name} (${cpus().length} logical CPUs)`;
}

async function main(): Promise<void> {
  const program = new Command(commandName('bench-serve'))
    .description('Load-test `resnet-ts serve` on loopback: dynamic batching on vs off at several client counts; writes the "serve" key of bench.json.')
    .option('--model <name>', 'registry model (random-init weights; speed does not depend on their values)', 'resnet50')
    .option('--duration <s>', 'seconds of load per case', positiveInt, 15)
    .option('--max-requests <n>', 'upper bound on the requests of one case', positiveInt, 5000)
    .option('--clients <list>', 'concurrent clients, comma-separated', ints, [1, 8, 32])
    .option('--delay <ms>', '--max-delay-ms of the batching server', positiveInt, 5)
    .option('--threads <n>', 'libtorch threads of the server (default: all cores)', positiveInt)
    .addOption(new Option('--amp <dtype>', "the servers' --amp (bf16: the fused bfloat16 net; pays on CPUs with AMX)").choices(['bf16', 'fp16']))
    .option('--output <file>', 'JSON file to write (its "serve" key; other keys are kept)', 'bench.json')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError();
  program.parse(process.argv);
  const o = program.opts<Options>();
  await loadGenerator();
  const dir = mkdtempSync(join(tmpdir(), 'bench-serve-'));
  const servers: Server[] = [];
  try {
    const weights = join(dir, `${o.model}.safetensors`);
    const model = models.create(o.model).eval();
    io.saveSafetensors(weights, model.stateDict());
    console.log(`${o.model} alone, batch 1 vs 32 ...`);
    const alone = await modelOnly(model, 32, o.duration, o.threads, o.amp);
    model.dispose();
    // A photo-sized JPEG (ImageNet's typical 500x375), smooth noise so that decoding does real work.
    const px = Buffer.alloc(500 * 375 * 3);
    for (let i = 0, s = 1; i < px.length; i++) px[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24;
    const body = await sharp(px, { raw: { width: 500, height: 375, channels: 3 } }).blur(2).jpeg({ quality: 90 }).toBuffer();
    const common = ['--model', o.model, '--weights', weights, '--queue', '1024', ...(o.threads ? ['--threads', String(o.threads)] : []), ...(o.amp ? ['--amp', o.amp] : [])];
    const on = await start([...common, '--max-batch', '32', '--max-delay-ms', String(o.delay)]);
    servers.push(on);
    const off = await start([...common, '--max-batch', '1', '--max-delay-ms', '0']);
    servers.push(off);
    console.log(`warming up both servers (${o.model}) ...`);
    for (const s of [on, off]) await load(s.url, body, Math.max(...o.clients), { ...o, duration: Math.min(o.duration, 5) });
    const cases: Case[] = [];
    for (const clients of o.clients) {
      for (const [s, batching] of [[on, 'on'], [off, 'off']] as const) {
        const c = await measure(s, batching, clients, body, o);
        cases.push(c);
        console.log(`batching ${batching.padEnd(3)} clients ${String(clients).padStart(2)}: ${c.imagesPerSecond.toFixed(1)} images/s, p50 ${c.p50Ms.toFixed(0)} ms, p99 ${c.p99Ms.toFixed(0)} ms, ` +
          `mean batch ${c.meanBatch.toFixed(1)}, event-loop p99 ${c.eventLoopP99Ms.toFixed(1)} ms${c.failed ? `, ${c.failed} failed` : ''}`);
      }
    }
    const at = (b: 'on' | 'off', n: number): Case => cases.find((c) => c.batching === b && c.clients === n)!;
    const ratios = Object.fromEntries(o.clients.map((n) => [n, at('on', n).imagesPerSecond / at('off', n).imagesPerSecond]));
    const most = Math.max(...o.clients);
    const loaded = at('on', most);
    const targets = {
      [`batching speed-up at ${most} clients >= 1.5`]: ratios[most]! >= 1.5,
      [`p99 <= 3 x p50 at ${most} clients (batching on)`]: loaded.p99Ms <= 3 * loaded.p50Ms,
      'event-loop delay p99 < 50 ms (batching on, every client count)': cases.filter((c) => c.batching === 'on').every((c) => c.eventLoopP99Ms < 50),
    };
    const result = {
      date: new Date().toISOString(), cpu: cpuModel(), node: process.version, torch: torchVersion(), model: o.model, amp: o.amp ?? 'fp32',
      image: '500x375 JPEG', durationPerCaseS: o.duration, maxDelayMs: o.delay, cases, speedupByClients: ratios, targets,
      modelAlone: { ...alone, ratio: alone.batchNImagesPerSecond / alone.batch1ImagesPerSecond },
      note: 'event-loop p99 is prom-client\'s monitorEventLoopDelay (10 ms resolution, which its values include)',
    };
    const prev = existsSync(o.output) ? JSON.parse(readFileSync(o.output, 'utf8')) : {};
    writeFileSync(o.output, `${JSON.stringify({ ...prev, serve: result }, null, 2)}\n`);
    console.log(`\n${result.cpu}, ${result.date.slice(0, 10)}, ${o.model} ${result.amp}, node ${process.version}, libtorch ${result.torch}\n`);
    console.log('| clients | batching on: images/s | p50 / p99 ms | mean batch | batching off: images/s | p50 / p99 ms | speed-up | event-loop p99 (on) |');
    console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const n of o.clients) {
      const [a, b] = [at('on', n), at('off', n)];
      console.log(`| ${n} | ${a.imagesPerSecond.toFixed(1)} | ${a.p50Ms.toFixed(0)} / ${a.p99Ms.toFixed(0)} | ${a.meanBatch.toFixed(1)} | ${b.imagesPerSecond.toFixed(1)} | ` +
        `${b.p50Ms.toFixed(0)} / ${b.p99Ms.toFixed(0)} | ${ratios[n]!.toFixed(2)}x | ${a.eventLoopP99Ms.toFixed(1)} ms |`);
    }
    for (const [k, v] of Object.entries(targets)) console.log(`${v ? 'met    ' : 'NOT met'}  ${k}`);
    console.log(`the model alone in a session: ${alone.batch1ImagesPerSecond.toFixed(1)} images/s at batch 1, ${alone.batchNImagesPerSecond.toFixed(1)} at batch 32 ` +
      `(${result.modelAlone.ratio.toFixed(2)}x): the most batching can gain here`);
    console.log(`\nwrote ${o.output} ("serve")`);
  } finally {
    for (const s of servers) s.proc.kill('SIGTERM');
    await Promise.all(servers.map((s) => s.exited));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
