// Worker threads (issue 18 item 2, issue 15 item 8): the addon is context-aware, so it loads in any
// number of Workers at once; a Worker's tensors are freed when it exits; a handle never crosses
// threads. References: arithmetic (a matmul with a closed-form sum), the process's RSS as the OS
// reports it, and the values each thread put in its own tensors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { native } from '../lib/native.ts';
import { ones } from '../lib/creation.ts';
import { Tensor } from '../lib/tensor.ts';
import { root } from './helpers.ts';

const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('./workers.worker.ts', import.meta.url).href)}); })`;
function worker<T>(workerData: Record<string, unknown>): Promise<T> {
  return new Promise((resolve, reject) => {
    const w = new Worker(boot, { eval: true, workerData });
    let msg: T;
    w.on('message', (m: T) => (msg = m));
    w.on('error', reject);
    w.on('exit', (code) => (code === 0 ? resolve(msg) : reject(new Error(`worker exited with ${code}`))));
  });
}

test('the addon loads in 12 Workers at once, and 12 Workers that each end holding a 64 MiB tensor leave RSS within 100 MiB of the start', () => {
  // sum(A @ A) for A = arange(n*n).reshape(n, n) is sum_k colsum_k * rowsum_k, in closed form here.
  const n = 32;
  let want = 0;
  for (let k = 0; k < n; k++) {
    let col = 0;
    let row = 0;
    for (let i = 0; i < n; i++) {
      col += i * n + k;
      row += k * n + i;
    }
    want += col * row;
  }
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'test', 'workers.child.ts'), String(n)], { cwd: root, encoding: 'utf8', timeout: 180_000 });
  assert.is(r.status, 0, r.stderr.slice(-2000));
  const line = r.stdout.split('\n').find((l) => l.startsWith('WORKERS '))!;
  const res = JSON.parse(line.slice('WORKERS '.length)) as { start: number; end: number; held: { product: number; memory: { bytes: number }; sum: number }[] };
  console.log(`  workers: RSS ${res.start.toFixed(0)} MiB before, ${res.end.toFixed(0)} MiB after 12 Workers`);
  assert.is(res.held.length, 12);
  for (const h of res.held) {
    assert.is(h.product, want);
    assert.is(h.memory.bytes, 64 * 2 ** 20, 'each Worker saw only its own tensor');
    assert.is(h.sum, 16 * 2 ** 20);
  }
  assert.ok(res.end - res.start < 100, `RSS grew by ${(res.end - res.start).toFixed(0)} MiB`);
});

test('a handle never crosses threads: another thread\'s handle is a clear error, not that thread\'s tensor', async () => {
  // Several live tensors, so the slot numbers the Worker fills are live here too.
  const ours = Array.from({ length: 8 }, (_, i) => ones([2]).mul(i));
  const r = await worker<{ toArray: string; add: string; dispose: string; isHandle: boolean; own: bigint; ownValues: number[] }>({ job: 'foreign', handle: ours[3]!.h });
  for (const msg of [r.toArray, r.add, r.dispose]) assert.match(msg, /is a Tensor of another thread/);
  assert.is(r.isHandle, false);
  assert.equal(r.ownValues, [100, 100], 'the Worker made its own tensor');
  // The Worker's handle, back here after it exited, is refused the same way.
  const theirs = r.own as unknown as Tensor['h'];
  assert.throws(() => native.toArray(theirs), /argument 'self' is a Tensor of another thread/);
  assert.throws(() => new Tensor(theirs).add(1), /is a Tensor of another thread/);
  assert.throws(() => native.cat([ours[0]!.h, theirs], 0), /argument 'tensors' is a Tensor of another thread/);
  assert.equal(Array.from(ours[3]!.toArray() as Float32Array), [3, 3], 'our tensor is untouched');
  for (const t of ours) t.dispose();
});

test.run();
