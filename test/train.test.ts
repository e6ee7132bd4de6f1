// The training loop and `npm run train`: learning, resuming (after kill -9, Ctrl-C and SIGTERM) to the
// same result as an uninterrupted run, refusing damaged checkpoints and ones made with other flags,
// stopping on NaN, flat memory, and the replaceable step and evaluation forward.
// References: chance accuracy (10 %), the uninterrupted run itself, the bytes written to disk.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { memory, tensor, tidy, manualSeed, Tensor } from '../lib/index.ts';
import { Sequential, Conv2d, BatchNorm2d, ReLU, AdaptiveAvgPool2d, Flatten, Linear } from '../lib/nn/index.ts';
import { SGD, LRScheduler, constant } from '../lib/optim/index.ts';
import { DataLoader, type BatchSource } from '../lib/data/index.ts';
import { fit, evaluate, eagerStep, saveCheckpoint, loadCheckpoint, NonFiniteLossError, type StepFactory } from '../lib/train/index.ts';
import { comparableSummary, root, tmp } from './helpers.ts';

const SCRIPT = join(root, 'scripts', 'train.ts');
const FLAGS = ['--epochs', '2', '--limit-train', '1536', '--limit-test', '300', '--batch-size', '64', '--threads', '1', '--seed', '3', '--log-every', '1', '--quiet'];
const node = (args: string[]) => [process.execPath, ['--import', 'tsx', SCRIPT, ...args]] as const;

function runScript(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const [cmd, a] = node(args);
  const r = spawnSync(cmd, a, { cwd: root, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function start(args: string[]): ChildProcess & { done: Promise<number | null>; err: () => string } {
  const [cmd, a] = node(args);
  const child = spawn(cmd, a, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return Object.assign(child, { done, err: () => err });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string, ms = 240_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
const stepLines = (dir: string): number =>
  existsSync(join(dir, 'metrics.jsonl')) ? readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"kind":"step"')).length : 0;

const comparable = comparableSummary;

const baseline = tmp();

test('a 2-epoch run learns (test accuracy well above the 10 % of chance) and writes its files', () => {
  const r = runScript([...FLAGS, '--out', baseline]);
  assert.is(r.status, 0, r.stderr);
  const s = JSON.parse(readFileSync(join(baseline, 'summary.json'), 'utf8'));
  assert.ok(s.testAccuracy > 0.4, `test accuracy ${s.testAccuracy}`);
  assert.is(s.epochs, 2);
  assert.is(s.worldSize, 1);
  assert.is(s.model, 'resnet20');
  assert.ok(s.bestEpoch === 1 || s.bestEpoch === 2);
  assert.is(s.flags.batchSize, 64);
  const lines = readFileSync(join(baseline, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.is(lines.filter((l) => l.kind === 'epoch').length, 2);
  assert.is(lines.filter((l) => l.kind === 'step').length, 48);
  assert.ok(existsSync(join(baseline, 'report.html')) && existsSync(join(baseline, 'checkpoint.safetensors')));
});

test('SIGKILL at seeded random steps and in the middle of a checkpoint write; each --resume ends bit-identical', async () => {
  // Kill points (steps as seen in metrics.jsonl) from a seeded generator, replayable with KILL_SEED.
  let seed = Number(process.env.KILL_SEED ?? 7) >>> 0;
  const rand = (): number => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const dir = tmp();
  const ckpt = join(dir, 'checkpoint.safetensors');
  const kills: string[] = [];
  // 1) two kills at random steps: one in epoch 1 (no checkpoint yet), one in epoch 2.
  for (const [lo, hi] of [[1, 23], [25, 47]] as const) {
    const at = lo + Math.floor(rand() * (hi - lo + 1));
    const child = start([...FLAGS, '--out', dir, '--resume']);
    await until(() => stepLines(dir) >= at, `step ${at}`);
    child.kill('SIGKILL');
    assert.is(await child.done, null);
    kills.push(`step ${at}`);
  }
  // 2) a kill while the end-of-epoch-1 checkpoint is being written: the write is held between the
  //    temporary file and the rename, and the process dies there.
  const { rmSync } = await import('node:fs');
  rmSync(dir, { recursive: true, force: true });
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', join(root, 'test/fixtures/hold-checkpoint-rename.ts'), SCRIPT, ...FLAGS, '--out', dir], {
    cwd: root, stdio: 'ignore',
  });
  const closed = new Promise((r) => child.on('close', r));
  const { readdirSync } = await import('node:fs');
  const temp = (): string | undefined => (existsSync(dir) ? readdirSync(dir).find((f) => /^\.checkpoint\.safetensors\..*\.tmp$/.test(f)) : undefined);
  await until(() => temp() !== undefined, 'a checkpoint write in progress');
  child.kill('SIGKILL');
  await closed;
  kills.push('mid-checkpoint-write');
  assert.ok(temp() !== undefined && !existsSync(ckpt), 'the partial write must never be visible as the checkpoint');
  // 3) one more random kill in epoch 1 of the restarted run, then resume to the end.
  const at = 1 + Math.floor(rand() * 23);
  rmSync(join(dir, 'metrics.jsonl')); // from the killed run; the restart begins from scratch
  const again = start([...FLAGS, '--out', dir, '--resume']);
  await until(() => stepLines(dir) >= at, `step ${at}`);
  again.kill('SIGKILL');
  await again.done;
  kills.push(`step ${at}`);
  assert.ok(temp() === undefined, 'the stale temporary file is cleaned up on start');
  const r = runScript([...FLAGS, '--out', dir, '--resume']);
  assert.is(r.status, 0, r.stderr);
  assert.equal(comparable(dir), comparable(baseline), `killed at ${kills.join(', ')}`);
  // The model itself, not only the summary: the final weights are bit-identical.
  const { loadSafetensors } = await import('../lib/io/index.ts');
  const a = loadSafetensors(join(dir, 'checkpoint.safetensors'));
  const b = loadSafetensors(join(baseline, 'checkpoint.safetensors'));
  for (const k of Object.keys(b)) if (k.startsWith('model.')) assert.ok(a[k]!.equal(b[k]!), `${k} differs after resumes`);
});

test('Ctrl-C mid-epoch saves a checkpoint and exits 130; --resume finishes identically', async () => {
  const dir = tmp();
  const child = start([...FLAGS, '--out', dir]);
  await until(() => stepLines(dir) >= 3, 'three steps');
  child.kill('SIGINT');
  assert.is(await child.done, 130);
  assert.ok(existsSync(join(dir, 'checkpoint.safetensors')), 'checkpoint written on interrupt');
  const { readSafetensorsHeader } = await import('../lib/io/index.ts');
  const saved = JSON.parse(readSafetensorsHeader(join(dir, 'checkpoint.safetensors')).metadata.meta!).state as { epoch: number; batch: number };
  const r = runScript([...FLAGS.filter((a) => a !== '--quiet'), '--out', dir, '--resume']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`resuming at epoch ${saved.epoch + 1} of 2, batch ${saved.batch} \\(step \\d+\\)`));
  assert.equal(comparable(dir), comparable(baseline));
});

test('a second Ctrl-C exits at once with 130', async () => {
  const dir = tmp();
  const child = start([...FLAGS, '--out', dir]);
  await until(() => stepLines(dir) >= 1, 'a step');
  child.kill('SIGINT');
  child.kill('SIGINT');
  assert.is(await child.done, 130);
  assert.match(child.err(), /interrupted again|checkpoint/);
});

test('SIGTERM mid-epoch is handled as Ctrl-C: the checkpoint holds the steps done and the exit code is 143', async () => {
  const dir = tmp();
  const child = start([...FLAGS, '--out', dir]);
  await until(() => stepLines(dir) >= 3, 'three steps');
  child.kill('SIGTERM');
  assert.is(await child.done, 143, child.err());
  const { readSafetensorsHeader } = await import('../lib/io/index.ts');
  const state = JSON.parse(readSafetensorsHeader(join(dir, 'checkpoint.safetensors')).metadata.meta!).state;
  assert.is(state.epoch, 0);
  assert.ok(state.batch >= 3 && state.batch === stepLines(dir), `checkpoint at batch ${state.batch}, ${stepLines(dir)} steps logged`);
  assert.ok(!existsSync(join(dir, 'summary.json')));
});

test('--resume with another --batch-size or --seed is refused naming the flags, nothing changed; --force-resume continues', () => {
  const dir = tmp();
  const ckpt = join(dir, 'checkpoint.safetensors');
  writeFileSync(ckpt, readFileSync(join(baseline, 'checkpoint.safetensors')));
  const before = readFileSync(ckpt);
  const swap = (flag: string, value: string) => FLAGS.map((a, i) => (FLAGS[i - 1] === flag ? value : a));
  const batch = runScript([...swap('--batch-size', '32'), '--out', dir, '--resume']);
  assert.is(batch.status, 2, batch.stderr);
  assert.match(batch.stderr, /--batch-size 64 \(now 32\)/);
  assert.not.match(batch.stderr, /--seed/);
  const both = runScript([...swap('--batch-size', '32').map((a, i, all) => (all[i - 1] === '--seed' ? '4' : a)), '--out', dir, '--resume']);
  assert.is(both.status, 2, both.stderr);
  assert.match(both.stderr, /--batch-size 64 \(now 32\), --seed 3 \(now 4\).*--force-resume/);
  // Another --model does not fit the checkpoint's tensors at all: still the flags, not the tensors' names.
  const other = runScript([...swap('--seed', '4'), '--model', 'resnet32', '--out', dir, '--resume']);
  assert.is(other.status, 2, other.stderr);
  assert.match(other.stderr, /--model resnet20 \(now resnet32\), --seed 3 \(now 4\)/);
  assert.ok(readFileSync(ckpt).equals(before), 'a refused resume must not touch the checkpoint');
  assert.ok(!existsSync(join(dir, 'metrics.jsonl')), 'a refused resume must not rewrite the metrics');
  const forced = runScript([...swap('--seed', '4'), '--out', dir, '--resume', '--force-resume']);
  assert.is(forced.status, 0, forced.stderr);
  assert.is(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).epochs, 2);
});

test('a fresh run (no --resume) in a folder holding an earlier checkpoint moves that run\'s files to previous-<time>/, byte for byte', () => {
  const dir = tmp();
  const earlier = readFileSync(join(baseline, 'checkpoint.safetensors'));
  writeFileSync(join(dir, 'checkpoint.safetensors'), earlier);
  writeFileSync(join(dir, 'summary.json'), '{"earlier":true}');
  const r = runScript([...FLAGS.map((a, i) => (FLAGS[i - 1] === '--epochs' ? '1' : a)), '--out', dir]);
  assert.is(r.status, 0, r.stderr);
  const kept = readdirSync(dir).filter((f) => f.startsWith('previous-'));
  assert.is(kept.length, 1, readdirSync(dir).join(' '));
  assert.ok(readFileSync(join(dir, kept[0]!, 'checkpoint.safetensors')).equals(earlier), 'the earlier checkpoint must be kept as it was');
  assert.is(readFileSync(join(dir, kept[0]!, 'summary.json'), 'utf8'), '{"earlier":true}');
  assert.is(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).epochs, 1);
  assert.not.ok(readFileSync(join(dir, 'checkpoint.safetensors')).equals(earlier));
});

test('a damaged checkpoint is refused with a clear error and nothing is loaded', () => {
  const dir = tmp();
  const good = readFileSync(join(baseline, 'checkpoint.safetensors'));
  const flipped = Buffer.from(good);
  flipped[flipped.length - 100]! ^= 0x10;
  writeFileSync(join(dir, 'checkpoint.safetensors'), flipped);
  const r = runScript([...FLAGS, '--out', dir, '--resume']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /checkpoint .* refused: checksum mismatch/);
  writeFileSync(join(dir, 'checkpoint.safetensors'), good.subarray(0, good.length - 5000));
  const t = runScript([...FLAGS, '--out', dir, '--resume']);
  assert.is(t.status, 1);
  assert.match(t.stderr, /checkpoint .* unreadable/);
  // In-process: the model's weights are untouched after a refused load.
  const { model, opt } = tiny();
  const before = model.stateDict()['0.weight']!.toArray();
  const path = join(dir, 'tiny.safetensors');
  saveCheckpoint(path, model, opt, { epoch: 1, batch: 0, globalStep: 3, scheduler: { steps: 3 } });
  const bytes = readFileSync(path);
  bytes[bytes.length - 1]! ^= 0xff;
  writeFileSync(path, bytes);
  const other = tiny(1);
  const otherBefore = other.model.stateDict()['0.weight']!.toArray();
  assert.throws(() => loadCheckpoint(path, other.model, other.opt), /refused: checksum mismatch/);
  assert.equal(other.model.stateDict()['0.weight']!.toArray(), otherBefore);
  assert.not.equal(Array.from(before as Float32Array), Array.from(otherBefore as Float32Array));
});

test('bad flags exit 2 naming the flag; --help exits 0', () => {
  for (const [args, re] of [
    [['--epochs', 'x'], /--epochs/],
    [['--lr', '-1'], /--lr/],
    [['--bogus'], /--bogus/],
    [['--schedule', 'warp'], /--schedule/],
    [['--model', 'resnet9000'], /--model.*unknown model/],
  ] as [string[], RegExp][]) {
    const r = runScript([...args, '--quiet', '--limit-train', '64', '--limit-test', '64']);
    assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  const h = runScript(['--help']);
  assert.is(h.status, 0);
  assert.match(h.stdout, /--limit-train/);
});

// ---- in-process loop with a tiny model ----

function tiny(seed = 0) {
  manualSeed(seed);
  const model = new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(4, 10));
  const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
  return { model, opt };
}

/** n random 8x8 images with labels from their mean brightness; `poisonAfter` loads return NaN pixels. */
function source(n: number, poisonAfter = Infinity): BatchSource {
  let loads = 0;
  return {
    length: n,
    load(indices) {
      const poison = loads++ >= poisonAfter;
      return tidy(() => {
        const x = Float32Array.from({ length: indices.length * 64 }, (_, i) => (poison ? NaN : ((indices[i >> 6]! * 131 + i * 7) % 97) / 97));
        const y = tensor(Array.from(indices, (k) => k % 10), { dtype: 'int64' });
        return { x: tensor(x, { shape: [indices.length, 1, 8, 8] }), y };
      });
    },
  };
}

test('a NaN loss stops training with a clear message and keeps the last good checkpoint', async () => {
  const dir = tmp();
  const { model, opt } = tiny();
  const loader = new DataLoader(source(64, 4), { batchSize: 16, shuffle: true });
  const ckpt = join(dir, 'checkpoint.safetensors');
  let err: unknown;
  try {
    await fit({ model, optimizer: opt, schedule: new LRScheduler(opt, constant()), train: loader, epochs: 3, outDir: dir, quiet: true });
  } catch (e) {
    err = e;
  }
  assert.instance(err, NonFiniteLossError);
  assert.match((err as Error).message, /loss became NaN at epoch 2, step 5 .* last good checkpoint .* is kept/);
  const { model: m2, opt: o2 } = tiny(5);
  const state = loadCheckpoint(ckpt, m2, o2);
  assert.is(state.epoch, 1);
  assert.ok(statSync(ckpt).size > 0);
});

test('fit runs a replaced step and scores a given forward (the extension points of EMA, TTA and CUDA graphs)', async () => {
  const dir = tmp();
  const { model, opt } = tiny();
  const loader = new DataLoader(source(64), { batchSize: 16 });
  let steps = 0;
  const step: StepFactory = (parts) => {
    const eager = eagerStep(parts);
    return (b, agree) => (steps++, eager(b, agree));
  };
  // Logits that always pick class 0: the test accuracy is the share of label 0 (k % 10 === 0: 7 of 64).
  const evalForward = (x: Tensor) => tidy(() => tensor([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unsqueeze(0).expand([x.shape[0]!, 10]).contiguous());
  const r = await fit({ model, optimizer: opt, schedule: new LRScheduler(opt, constant()), train: loader, test: loader, epochs: 2, outDir: dir, quiet: true, step, evalForward });
  assert.is(steps, 8);
  assert.is(r.summary.testAccuracy, 7 / 64);
  assert.is(r.summary.steps, 8);
  const direct = await evaluate(model, loader, { forward: evalForward });
  assert.is(direct.top1, 7 / 64);
  assert.is(direct.images, 64);
});

test('2,000 training steps keep memory().tensors flat', async () => {
  const dir = tmp();
  const { model, opt } = tiny();
  const loader = new DataLoader(source(2000 * 4), { batchSize: 4, shuffle: true });
  const counts: number[] = [];
  const rss: number[] = [];
  let steps = 0;
  await fit({
    model, optimizer: opt, schedule: new LRScheduler(opt, constant()), train: loader, epochs: 1, outDir: dir, quiet: true, logEvery: 100,
    shouldStop: () => {
      if (++steps % 100 === 0) {
        counts.push(memory().tensors);
        rss.push(process.memoryUsage().rss);
      }
      return false;
    },
  });
  assert.is(steps, 2000);
  // At the last step the loader has nothing left to prefetch, so the count may only drop there.
  const warm = counts.slice(2, -1);
  assert.ok(Math.max(...warm) === Math.min(...warm) && counts[counts.length - 1]! <= warm[0]!, `live tensors drift: ${counts.join(' ')}`);
  const growth = rss[rss.length - 1]! / rss[2]! - 1;
  assert.ok(growth < 0.05, `RSS grew ${(100 * growth).toFixed(1)} % after warm-up`);
  assert.ok(!(model.parameters()[0] as Tensor).isDisposed);
});

test.run();
