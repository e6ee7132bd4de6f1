// Data-parallel training over c10d Gloo on loopback, with 2 ranks in 2 processes.
// References: each rank's own unsynchronised gradients (their average is what DDP must produce),
// and rank 0's parameters (every replica must equal them bit for bit).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { distributed as dist, io, models, nn, randn, tidy, type Tensor } from '../lib/index.ts';
import { comparableSummary, maxAbsDiff, py, root, tmp, visionPython } from './helpers.ts';

interface Done { code: number | null; stderr: string; ms: number }

function launch(world: number, env: Record<string, string>): Promise<Done[]> {
  const port = String(20000 + Math.floor(Math.random() * 20000));
  const t0 = Date.now();
  return Promise.all(
    Array.from({ length: world }, (_, rank) =>
      new Promise<Done>((resolve) => {
        const p = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/fixtures/ddp-worker.ts')], {
          env: { ...process.env, ...env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        p.stderr.on('data', (d) => (stderr += d));
        p.on('close', (code) => resolve({ code, stderr, ms: Date.now() - t0 }));
      }),
    ),
  );
}

const arrays = (sd: Record<string, Tensor>): Record<string, Float32Array> =>
  Object.fromEntries(Object.entries(sd).filter(([, t]) => t.dtype === 'float32').map(([k, t]) => [k, t.toArray() as Float32Array]));

test('2 Gloo ranks: synchronised gradients are the average of the per-rank gradients; replicas stay identical', async () => {
  const dir = tmp();
  const done = await launch(2, { MODE: 'train', OUT_DIR: dir });
  for (const d of done) assert.is(d.code, 0, d.stderr);
  const local = [0, 1].map((r) => arrays(io.loadSafetensors(join(dir, `local-${r}.safetensors`))));
  const synced = [0, 1].map((r) => arrays(io.loadSafetensors(join(dir, `synced-${r}.safetensors`))));
  let compared = 0;
  for (const k of Object.keys(local[0]!)) {
    const avg = local[0]![k]!.map((v, i) => (v + local[1]![k]![i]!) / 2);
    assert.ok(maxAbsDiff(synced[0]![k]!, avg) < 1e-6, `gradient of ${k} is not the average`);
    assert.ok(maxAbsDiff(synced[1]![k]!, synced[0]![k]!) === 0, `ranks disagree on the gradient of ${k}`);
    assert.ok(maxAbsDiff(local[0]![k]!, local[1]![k]!) > 0, `ranks had identical local gradients for ${k}: the test would prove nothing`);
    compared++;
  }
  assert.ok(compared > 20);
  const p0 = io.loadSafetensors(join(dir, 'params-0.safetensors'));
  const p1 = io.loadSafetensors(join(dir, 'params-1.safetensors'));
  assert.equal(Object.keys(p0).sort(), Object.keys(p1).sort());
  for (const k of Object.keys(p0)) assert.ok(p0[k]!.equal(p1[k]!), `parameter ${k} differs between ranks`);
  const [l0, l1, b0, b1] = ['buffers-local-0', 'buffers-local-1', 'buffers-0', 'buffers-1'].map((f) => io.loadSafetensors(join(dir, `${f}.safetensors`)));
  assert.ok(!l0!['bn1.running_mean']!.equal(l1!['bn1.running_mean']!), 'local running statistics should differ (different data per rank)');
  for (const k of Object.keys(b0!)) assert.ok(b0![k]!.equal(b1![k]!), `buffer ${k} differs between ranks after broadcastBuffers`);
  // Overlap: every bucket's allreduce was started by the gradient hooks while backward ran,
  // none was left for syncGradients() to start.
  for (const r of [0, 1]) {
    const { buckets, overlapped } = JSON.parse(readFileSync(join(dir, `buckets-${r}.json`), 'utf8')) as { buckets: number[]; overlapped: number };
    assert.ok(buckets.length > 5, `only ${buckets.length} buckets at bucketCapMB 0.05`);
    assert.is(buckets.reduce((a, b) => a + b, 0), Object.keys(local[0]!).length);
    assert.is(overlapped, buckets.length, `rank ${r}: ${overlapped} of ${buckets.length} buckets launched during backward`);
  }
});

test('convertSyncBatchNorm swaps in SyncBatchNorm modules on the same tensors, as torch.nn.SyncBatchNorm.convert_sync_batchnorm does', () => tidy(() => {
  const ref = py<{ keys: string[]; sync: number }>(`import json, torch, torchvision
m = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torchvision.models.resnet18())
print(json.dumps({'keys': list(m.state_dict()), 'sync': sum(isinstance(x, torch.nn.SyncBatchNorm) for x in m.modules())}))`, { python: visionPython });
  const model = models.create('resnet18');
  const before = model.stateDict();
  const x = randn([2, 3, 32, 32]);
  const yPlain = model.forward(x);
  const same = dist.convertSyncBatchNorm(model);
  assert.is(same, model);
  assert.is(model.modules().filter((m) => m instanceof nn.SyncBatchNorm).length, ref.sync);
  assert.equal(Object.keys(model.stateDict()), ref.keys);
  for (const [k, t] of Object.entries(model.stateDict())) assert.is(t, before[k], `${k} is not the tensor it was`);
  // The blocks' own fields follow the swap, so forward runs the new modules.
  assert.instance(model.child<nn.Sequential>('layer1').at<nn.Module & { bn1: nn.Module }>(0).bn1, nn.SyncBatchNorm);
  // Without a process group a SyncBatchNorm normalises as BatchNorm2d does (the same batch, in training mode).
  assert.ok(maxAbsDiff(model.forward(x).toArray() as Float32Array, yPlain.toArray() as Float32Array) < 1e-5);
  const bn = new nn.BatchNorm2d(3);
  const sync = dist.convertSyncBatchNorm(bn);
  assert.instance(sync, nn.SyncBatchNorm);
  assert.is(sync.weight, bn.weight);
  model.dispose();
}));

test('SyncBatchNorm over 2 ranks (5 + 3 images) equals BatchNorm2d over the whole batch: output, gradients, running statistics', async () => {
  const dir = tmp();
  const done = await launch(2, { MODE: 'syncbn', OUT_DIR: dir });
  for (const d of done) assert.is(d.code, 0, d.stderr);
  for (const r of [0, 1]) {
    const m = JSON.parse(readFileSync(join(dir, `syncbn-${r}.json`), 'utf8')) as Record<string, number>;
    for (const k of ['y', 'dx', 'dw', 'db', 'runningMean', 'runningVar']) assert.ok(m[k]! < 2e-5, `rank ${r}: ${k} differs by ${m[k]}`);
    assert.ok(m.localOnly! > 1e-2, `rank ${r}: per-rank statistics alone already match (${m.localOnly}); the test would prove nothing`);
  }
});

test('a dead peer makes the surviving rank fail with an error within the timeout', async () => {
  const done = await launch(2, { MODE: 'die', OUT_DIR: tmp(), TIMEOUT_MS: '5000' });
  assert.is.not(done[0]!.code, 0, 'rank 0 should have failed');
  assert.match(done[0]!.stderr, /Error/);
  assert.ok(done[0]!.ms < 30_000, `rank 0 took ${done[0]!.ms} ms`);
});

// `npm run train -- --nproc-per-node 2 --sync-bn`: the launcher, sharded data, SyncBatchNorm, rank-0-only files, Ctrl-C and resume.
const TRAIN = join(root, 'scripts', 'train.ts');
const FLAGS = ['--nproc-per-node', '2', '--sync-bn', '--epochs', '2', '--limit-train', '1536', '--limit-test', '300', '--batch-size', '32', '--seed', '3', '--log-every', '1', '--quiet'];
const summaryOf = comparableSummary;
const ddpBaseline = tmp();

test('train.ts --nproc-per-node 2 trains data-parallel and only rank 0 writes', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', TRAIN, ...FLAGS, '--out', ddpBaseline], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  assert.is(r.status, 0, r.stderr);
  const s = summaryOf(ddpBaseline);
  assert.is(s.worldSize, 2);
  assert.is(s.epochs, 2);
  assert.ok((s.testAccuracy as number) > 0.4, `test accuracy ${s.testAccuracy}`);
  // 1536 images over 2 ranks of batch 32: 24 steps an epoch, each step counted once (rank 0's file).
  const lines = readFileSync(join(ddpBaseline, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.is(lines.filter((l) => l.kind === 'step').length, 48);
  assert.is(s.steps, 48);
});

test('Ctrl-C to the launcher stops both ranks with a checkpoint (exit 130); --resume ends as the uninterrupted run', async () => {
  const dir = tmp();
  const p = spawn(process.execPath, ['--import', 'tsx', TRAIN, ...FLAGS, '--out', dir], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  const done = new Promise<number | null>((r) => p.on('close', (c) => r(c)));
  const steps = (): number => (existsSync(join(dir, 'metrics.jsonl')) ? readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"step"')).length : 0);
  const t0 = Date.now();
  while (steps() < 30 && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
  p.kill('SIGINT');
  assert.is(await done, 130, err);
  assert.ok(existsSync(join(dir, 'checkpoint.safetensors')));
  assert.ok(!existsSync(join(dir, 'summary.json')));
  const r = spawnSync(process.execPath, ['--import', 'tsx', TRAIN, ...FLAGS, '--out', dir, '--resume'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  assert.is(r.status, 0, r.stderr);
  assert.equal(summaryOf(dir), summaryOf(ddpBaseline));
});

/** The pid of the launcher's child that runs `rank` (from /proc: its parent and its RANK variable). */
function rankPid(launcher: number, rank: number): number | undefined {
  for (const d of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== launcher) continue;
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return Number(d);
    } catch {
      // the process exited meanwhile
    }
  }
  return undefined;
}

test('SIGTERM to the launcher stops both ranks with a checkpoint (exit 143); a rank killed by SIGKILL is named and its 137 returned', async () => {
  const dir = tmp();
  const steps = (): number => (existsSync(join(dir, 'metrics.jsonl')) ? readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"step"')).length : 0);
  const start = (args: string[]) => {
    const p = spawn(process.execPath, ['--import', 'tsx', TRAIN, ...FLAGS, '--out', dir, ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const done = new Promise<number | null>((r) => p.on('close', (c) => r(c)));
    return { p, done, err: () => err };
  };
  const waitFor = async (n: number): Promise<void> => {
    const t0 = Date.now();
    while (steps() < n && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
  };
  const a = start([]);
  await waitFor(4);
  a.p.kill('SIGTERM');
  assert.is(await a.done, 143, a.err());
  assert.ok(existsSync(join(dir, 'checkpoint.safetensors')));
  assert.ok(!existsSync(join(dir, 'summary.json')));
  const saved = steps();
  const b = start(['--resume']);
  await waitFor(saved + 2);
  const pid = rankPid(b.p.pid!, 1);
  assert.ok(pid, 'rank 1 not found');
  process.kill(pid!, 'SIGKILL');
  assert.is(await b.done, 137, b.err());
  assert.match(b.err(), /rank 1 was killed by SIGKILL/);
});

test.run();
