// inference.session: the forward runs on a Worker sharing the model's storages; the main thread stays free.
// Proofs without timing: a forward held on an Atomics latch while the main thread runs callbacks and ops;
// the Worker's own view of every parameter's data pointer; results and error messages equal to the
// synchronous path's.
import { readdirSync } from 'node:fs';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeImage } from '../lib/data/index.ts';
import { IMAGENET_CATEGORIES, IMAGENET_WNIDS, evalBatch } from '../lib/data/imagenet.ts';
import { explain, getNumThreads, inference, memory, models, nn, noGrad, randn, setNumThreads, tidy, type Tensor } from '../lib/index.ts';
import { native } from '../lib/native.ts';
import { softmax } from '../lib/nn/functional.ts';
import { Exit, Latch, PointerProbe, ShapeLog } from './fixtures/session-modules.ts';

const small = (): nn.Module => models.resnet20().eval();
const settled = (p: Promise<unknown>): { done: boolean } => {
  const s = { done: false };
  p.then(() => (s.done = true), () => (s.done = true));
  return s;
};
async function rejects(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  const e = await fn().then(() => null, (err: Error) => err);
  assert.ok(e, `expected a rejection matching ${re}`);
  assert.match(e!.message, re);
}
// Opens a latch; tests also call it when they fail, so no Worker stays blocked and holds the process.
const release = (flag: Int32Array): void => { Atomics.store(flag, 1, 1); Atomics.notify(flag, 1); };
const latches: Int32Array[] = [];
const latch = (): Int32Array => { const f = new Int32Array(new SharedArrayBuffer(8)); latches.push(f); return f; };
test.after.each(() => latches.splice(0).forEach(release));
// Atomics.waitAsync (Node 16+) is missing from the configured TypeScript lib.
type WaitAsync = (a: Int32Array, i: number, v: number) => { value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
/** Resolves once `count` forwards have entered the latch. */
async function entered(flag: Int32Array, count = 1): Promise<void> {
  for (let v = Atomics.load(flag, 0); v < count; v = Atomics.load(flag, 0)) await waitAsync(flag, 0, v).value;
}
const nextTurn = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

test('a held forward leaves the main thread running callbacks and ops; the result equals the synchronous forward', async () => {
  const flag = latch();
  const inner = small();
  const s = await inference.session(new Latch(inner, flag), { threads: 1 });
  const x = randn([3, 3, 32, 32]);
  const run = s.run(x);
  const state = settled(run);
  await entered(flag); // the Worker is inside forward
  let ticks = 0;
  for (let i = 0; i < 5; i++) { await nextTurn(); ticks++; }
  const onMain = tidy(() => randn([64, 64]).matmul(randn([64, 64])).shape);
  assert.is(ticks, 5);
  assert.equal(onMain, [64, 64]);
  assert.is(state.done, false, 'the run finished while its forward was still held');
  release(flag);
  const y = await run;
  const ref = noGrad(() => inner.forward(x));
  assert.equal(y.shape, [3, 10]);
  assert.ok(y.equal(ref), 'session output differs from the synchronous forward');
  await s.close();
  for (const t of [x, y, ref]) t.dispose();
});

test('the Worker runs on the very same parameter and buffer storages (no copy of the weights)', async () => {
  const inner = models.resnet18();
  const s = await inference.session(new PointerProbe(inner));
  const seen = await s.run(randn([1]));
  const mine = [...inner.parameters(), ...inner.buffers()].map((p) => native.dataPtr(p.h));
  assert.equal(Array.from(seen.toArray() as Float64Array), mine);
  await s.close();
  seen.dispose();
  inner.dispose();
});

test('errors reject with the synchronous messages; bad calls are TypeErrors; a model with an unregistered class is refused', async () => {
  const m = small();
  const s = await inference.session(m, { maxBatch: 2 });
  const bad = randn([2, 5, 32, 32]);
  const sync = (() => { try { noGrad(() => m.forward(bad)); } catch (e) { return e as Error; } })();
  const async = await s.run(bad).then(() => null, (e: Error) => e);
  assert.ok(sync && async, 'both paths must fail');
  assert.is(async!.message, sync!.message);
  assert.is(async!.constructor, sync!.constructor);
  await rejects(() => s.run('x' as unknown as Tensor), /x must be a Tensor/);
  await rejects(() => s.classify([]), /no images/);
  await rejects(() => s.classify([{} as unknown as Uint8Array]), /encoded bytes or \{ data, width, height \}/);
  // The session still serves after failures, and chunks above maxBatch give the same logits.
  const x = randn([5, 3, 32, 32]);
  const y = await s.run(x);
  assert.ok(y.allclose(noGrad(() => m.forward(x)), 1e-5, 1e-5));
  await s.close();
  await rejects(() => s.run(x), /closed/);
  class Unregistered extends nn.Module { forward(t: Tensor): Tensor { return t; } }
  await rejects(() => inference.session(new Unregistered()), /Unregistered, which is not registered.*registerModuleClass/);
  await rejects(() => inference.session(m, { maxBatch: 0 }), /maxBatch must be a positive integer/);
  for (const t of [bad, x, y]) t.dispose();
});

test('close() waits for running and queued work; runs use eval mode without touching the caller\'s model', async () => {
  const flag = latch();
  const inner = small().train();
  const s = await inference.session(new Latch(inner, flag));
  const x = randn([2, 3, 32, 32]);
  const order: string[] = [];
  const first = s.run(x).then((t) => { order.push('first'); return t; });
  const second = s.run(x).then((t) => { order.push('second'); return t; });
  await entered(flag);
  const closed = s.close().then(() => order.push('closed'));
  await nextTurn();
  assert.equal(order, []);
  await rejects(() => s.run(x), /closed/);
  release(flag);
  await closed;
  assert.equal(order, ['first', 'second', 'closed']);
  assert.is(inner.training, true, 'the session switched the caller\'s model to eval mode');
  const ref = noGrad(() => inner.eval().forward(x));
  assert.ok((await first).equal(ref) && (await second).equal(ref));
  assert.is(native.sharedCount(), 0, 'a parked tensor was never adopted');
});

test('workers: 2 runs the forward on two Workers at once, over the same weights', async () => {
  const flag = latch();
  const inner = small();
  const s = await inference.session(new Latch(inner, flag), { workers: 2, threads: 1 });
  const x = randn([1, 3, 32, 32]);
  const runs = [s.run(x), s.run(x)];
  await entered(flag, 2);
  assert.is(Atomics.load(flag, 0), 2, 'both forwards are inside the latch together');
  release(flag);
  const ref = noGrad(() => inner.forward(x));
  for (const y of await Promise.all(runs)) assert.ok(y.equal(ref));
  await s.close();
});

// libgomp counts the threads of every pool in the process and, once they outnumber the CPUs, stops spin-waiting
// in all teams; an idle pool left on the main thread by its own ops then slows the Worker's team. A session
// ends this thread's idle OpenMP workers before it hands out a job (native.releaseThreadPool).
const threadCount = (): number => readdirSync('/proc/self/task').length;
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  return cond();
}
const parallelOp = (): void => tidy(() => void randn([1 << 22]).add(1)); // 4 M elements: aten splits it over the threads

test('releaseThreadPool ends this thread\'s idle OpenMP threads; a session does so before each job', async () => {
  const threads = getNumThreads();
  setNumThreads(2);
  const s = await inference.session(small(), { threads: 2 });
  const x = randn([2, 3, 32, 32]);
  try {
    (await s.run(x)).dispose(); // the Worker's own team exists from here on
    parallelOp();
    const withPool = threadCount();
    assert.is(native.releaseThreadPool(), true, 'libtorch\'s libgomp has omp_pause_resource_all');
    assert.ok(await until(() => threadCount() < withPool), `the pool's thread ends (${withPool} -> ${threadCount()})`);
    const without = threadCount();
    parallelOp();
    assert.ok(threadCount() > without, 'the next parallel op starts the pool again');
    const again = threadCount();
    (await s.run(x)).dispose();
    assert.ok(await until(() => threadCount() < again), `a job ends it (${again} -> ${threadCount()})`);
  } finally {
    x.dispose();
    await s.close();
    setNumThreads(threads);
  }
});

test('a Worker that dies fails its run and every later one with the reason; close() still resolves', async () => {
  const s = await inference.session(new Exit());
  const x = randn([1]);
  await rejects(() => s.run(x), /worker exited with code 3; the session is unusable/);
  assert.match(s.error!.message, /exited with code 3/);
  await rejects(() => s.run(x), /exited with code 3/);
  await s.close();
  x.dispose();
});

test('classify: encoded bytes and decoded images give the synchronous path\'s top-k with ImageNet labels', async () => {
  const m = models.resnet18().eval();
  const px = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 2654435761) >>> 24;
  const jpeg = await sharp(px, { raw: { width: 300, height: 200, channels: 3 } }).blur(2).jpeg().toBuffer();
  const decoded = await decodeImage(jpeg);
  const s = await inference.session(m, { resize: 232, crop: 224 });
  const [a, b] = await s.classify([jpeg, decoded], { k: 3 });
  const [idx, prob] = tidy(() => {
    const logits = noGrad(() => m.forward(evalBatch([decoded], { resize: 232, crop: 224 })));
    const top = softmax(logits, 1).topk(3, 1);
    return [Array.from(top.indices.toArray() as BigInt64Array, Number), Array.from(top.values.toArray() as Float32Array)];
  });
  assert.equal(a, b);
  assert.equal(a!.map((p) => p.index), idx);
  a!.forEach((p, j) => {
    assert.ok(Math.abs(p.probability - prob[j]!) < 1e-6);
    assert.is(p.wnid, IMAGENET_WNIDS[p.index]);
    assert.is(p.label, IMAGENET_CATEGORIES[p.index]);
  });
  await rejects(() => s.classify([Buffer.from('not an image')]), /image 0 cannot be decoded/);
  const before = memory().tensors;
  await s.close();
  assert.is(memory().tensors, before, 'closing a session changed the caller\'s tensors');
  m.dispose();
});

test('explain: the Worker\'s Grad-CAM equals explain.explainImage on this thread and leaves the caller\'s parameters as they were', async () => {
  const m = models.resnet18().eval();
  const px = Buffer.alloc(90 * 70 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 2654435761) >>> 24;
  const decoded = await decodeImage(await sharp(px, { raw: { width: 90, height: 70, channels: 3 } }).blur(2).png().toBuffer());
  const s = await inference.session(m, { resize: 72, crop: 64, categories: IMAGENET_CATEGORIES });
  const mine = explain.explainImage(m, decoded, { resize: 72, crop: 64, classIndex: 7 });
  const [top, seven] = [await s.explain(decoded), await s.explain(decoded, { classIndex: 7, layer: 'layer4' })];
  assert.equal([seven.index, seven.label, seven.size], [7, IMAGENET_CATEGORIES[7], 64]);
  assert.ok(seven.cam.every((v, i) => Math.abs(v - mine.cam[i]!) < 1e-4), 'cam differs from the synchronous one');
  const png = await sharp(seven.png).raw().toBuffer();
  assert.ok(png.every((v, i) => Math.abs(v - mine.overlay.data[i]!) <= 1), 'overlay differs');
  assert.is(top.index, explain.explainImage(m, decoded, { resize: 72, crop: 64 }).classIndex);
  assert.ok(m.parameters().every((p) => p.requiresGrad && p.grad === null), 'the caller\'s parameters were touched');
  await rejects(() => s.explain(decoded, { classIndex: 1000 }), /classIndex must be an integer from 0 to 999/);
  await rejects(() => s.explain(decoded, { classIndex: -1 }), /non-negative integer/);
  await s.close();
  m.dispose();
});

test('amp: bf16 autocast runs in the Worker and stays close to float32', async () => {
  const m = small();
  const s = await inference.session(m, { amp: 'bf16' });
  const x = randn([2, 3, 32, 32]);
  const y = await s.run(x);
  const ref = noGrad(() => m.forward(x));
  assert.is(y.dtype, 'bfloat16');
  const cos = tidy(() => { const a = y.float().flatten(); return a.mul(ref.flatten()).sum().item() / (a.norm(2).item() * ref.norm(2).item()); });
  assert.ok(cos > 0.99, `cosine ${cos}`);
  await s.close();
  await rejects(() => inference.session(m, { amp: 'int8' as 'bf16' }), /amp must be/);
});

test('optimize: the Workers run the fused copy (equal to inference.optimize on this thread, and to the model to 1e-4); unsupported models run as they are', async () => {
  const m = small();
  const s = await inference.session(m, { optimize: true, threads: 1 });
  assert.is(s.optimized, true);
  const x = randn([2, 3, 32, 32]);
  const y = await s.run(x);
  const fused = inference.optimize(m);
  const [ref, viaFused] = noGrad(() => [m.forward(x), fused.forward(x)]);
  const rel = (a: Tensor, b: Tensor): number => tidy(() => a.sub(b).abs().max().item() / b.abs().max().item());
  assert.ok(rel(y, viaFused) < 1e-6, `session vs optimize() on this thread: ${rel(y, viaFused)}`);
  assert.ok(rel(y, ref) < 1e-4, `session vs the unfused model: ${rel(y, ref)}`);
  await s.close();
  const plain = new nn.Sequential(new nn.Conv2d(3, 4, 3), new nn.ReLU()).eval();
  const s2 = await inference.session(plain, { optimize: true });
  assert.is(s2.optimized, false);
  const z = await s2.run(x);
  const zRef = noGrad(() => plain.forward(x));
  assert.ok(z.equal(zRef));
  await s2.close();
  for (const t of [x, y, ref, viaFused, z, zRef]) t.dispose();
  fused.dispose();
  plain.dispose();
});

test('warmup: each Worker runs one forward per batch size on zero images of classify\'s shape before the session is ready', async () => {
  const log = new Int32Array(new SharedArrayBuffer(4 * 64));
  const s = await inference.session(new ShapeLog(small(), log), { threads: 1, workers: 2, maxBatch: 4, crop: 32, resize: 36, warmup: [1, 4, 1] });
  try {
    const shapes = Array.from({ length: Atomics.load(log, 0) }, (_, i) => Array.from(log.subarray(1 + 4 * i, 5 + 4 * i)).join('x')).sort();
    assert.equal(shapes, ['1x3x32x32', '1x3x32x32', '4x3x32x32', '4x3x32x32'], 'two Workers, batch sizes 1 and 4 once each (the repeated 1 dropped)');
    const y = await s.run(randn([2, 3, 32, 32]));
    assert.equal(y.shape, [2, 10]);
    assert.is(Atomics.load(log, 0), 5);
  } finally {
    await s.close();
  }
  await rejects(() => inference.session(small(), { maxBatch: 4, warmup: [8] }), /warmup batch sizes must be integers from 1 to maxBatch \(4\); got 8/);
  await rejects(() => inference.session(small(), { warmup: [0] }), /got 0/);
  await rejects(() => inference.session(small(), { warmup: 3 as unknown as number[] }), /warmup must be an array/);
  // A model that cannot take classify's input fails the start with the reason, not later requests.
  const gray = models.resnet20({ inChannels: 1 });
  await rejects(() => inference.session(gray, { warmup: [1], crop: 32 }), /warm-up at batch 1 \(zero images of 3 x 32 x 32\)/);
});

test.run();
