// Dynamic batching, back-pressure and graceful shutdown, made deterministic rather than timed: a delay so
// long that batches form only when full or when shutdown flushes them, and a forward held on an Atomics
// latch while the queue fills.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeImage } from '../lib/data/index.ts';
import { evalBatch } from '../lib/data/imagenet.ts';
import { inference, io, models, nn, noGrad, tidy } from '../lib/index.ts';
import { softmax } from '../lib/nn/functional.ts';
import { createClassifyServer } from '../lib/serve/index.ts';
import { Exit, Latch } from './fixtures/session-modules.ts';
import { jpeg, metric, startServer, stopServers, torchvisionFixture, type Child } from './serve-child.ts';

interface Pred { index: number; probability: number }
type Answer = { status: number; predictions?: Pred[]; error?: string; retryAfter?: string | null };

const images: Buffer[] = [];
let expected: Pred[][] = [];
let server: Child;

async function classify(url: string, body: Buffer): Promise<Answer> {
  const res = await fetch(new URL('v1/classify', url), { method: 'POST', body, headers: { 'content-type': 'image/jpeg' } });
  const json = (await res.json()) as { predictions?: Pred[]; error?: string };
  return { status: res.status, ...json, retryAfter: res.headers.get('retry-after') };
}

function sameAsSync(a: Answer, i: number, what: string): void {
  assert.is(a.status, 200, `${what}: ${JSON.stringify(a)}`);
  assert.equal(a.predictions!.map((p) => p.index), expected[i]!.map((p) => p.index), `${what}: classes differ from the synchronous path`);
  a.predictions!.forEach((p, j) => assert.ok(Math.abs(p.probability - expected[i]![j]!.probability) < 1e-4, `${what}: probability ${p.probability} vs ${expected[i]![j]!.probability}`));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  const { weights } = torchvisionFixture();
  for (let i = 0; i < 8; i++) images.push(await jpeg(160 + 16 * i, 200 - 8 * i, 100 + i));
  // The synchronous path: the same weights and preprocessing in this thread, one batch.
  const m = models.resnet18();
  const sd = io.loadPth(weights);
  m.loadStateDict(sd);
  Object.values(sd).forEach((t) => t.dispose());
  m.eval();
  const decoded = await Promise.all(images.map((b) => decodeImage(b)));
  const [idx, prob] = tidy(() => {
    const top = softmax(noGrad(() => m.forward(evalBatch(decoded, { resize: 128, crop: 112 }))), 1).topk(5, 1);
    return [Array.from(top.indices.toArray() as BigInt64Array, Number), Array.from(top.values.toArray() as Float32Array)];
  });
  expected = images.map((_, i) => Array.from({ length: 5 }, (_, j) => ({ index: idx[i * 5 + j]!, probability: prob[i * 5 + j]! })));
  m.dispose();
  server = await startServer(['--model', 'resnet18', '--weights', weights, '--max-batch', '32', '--max-delay-ms', '600000', '--queue', '64',
    '--resize', '128', '--crop', '112']); // small inputs keep 69 forwards cheap
});

test.after(stopServers);

test('64 concurrent requests: all answered as the synchronous path, in batches of 32 (seen in /metrics)', async () => {
  const answers = await Promise.all(Array.from({ length: 64 }, (_, r) => classify(server.url, images[r % 8]!)));
  answers.forEach((a, r) => sameAsSync(a, r % 8, `request ${r}`));
  const text = await (await fetch(new URL('metrics', server.url))).text();
  assert.is(metric(text, 'resnet_ts_batch_size_count'), 2);
  assert.is(metric(text, 'resnet_ts_batch_size_sum'), 64);
  assert.is(metric(text, 'resnet_ts_batch_size_bucket', 'le="16"'), 0);
  assert.is(metric(text, 'resnet_ts_batch_size_bucket', 'le="32"'), 2);
  assert.is(metric(text, 'resnet_ts_http_requests_total', 'code="200",route="/v1/classify"'), 64);
});

test('SIGTERM with requests in flight: they are answered, new connections are refused, exit code 0', async () => {
  const held = Array.from({ length: 5 }, (_, i) => classify(server.url, images[i]!));
  // The batch is not full and its delay is ten minutes: the five wait until shutdown flushes them.
  let depth = 0;
  for (let i = 0; i < 600 && depth !== 5; i++) {
    depth = metric(await (await fetch(new URL('metrics', server.url))).text(), 'resnet_ts_queue_depth');
    if (depth !== 5) await sleep(50);
  }
  assert.is(depth, 5, 'the five requests never reached the queue');
  server.proc.kill('SIGTERM');
  (await Promise.all(held)).forEach((a, i) => sameAsSync(a, i, `in-flight request ${i}`));
  assert.is(await server.exited, 0, server.output());
  assert.match(server.output(), /SIGTERM: finishing requests in flight[\s\S]*stopped/);
  const after = await fetch(new URL('healthz', server.url)).then(() => 'answered', (e: Error) => String((e.cause as Error)?.message ?? e));
  assert.match(after, /ECONNREFUSED/);
});

test('a full queue answers 503 with Retry-After, and the queued requests are answered once the forward goes on', async () => {
  const flag = new Int32Array(new SharedArrayBuffer(8));
  const release = (): void => { Atomics.store(flag, 1, 1); Atomics.notify(flag, 1); };
  const head = new nn.Sequential(new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(3, 1000));
  const s = await inference.session(new Latch(head, flag));
  const app = createClassifyServer({ session: s, model: 'latched', maxBatch: 1, maxDelayMs: 0, queue: 2 });
  const { url } = await app.listen(0);
  try {
    const first = classify(url, images[0]!);
    // The first batch is in the Worker's forward and cannot finish: the next two wait in the queue.
    type WaitAsync = (a: Int32Array, i: number, v: number) => { value: Promise<string> | string };
    await (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync(flag, 0, 0).value;
    const queued = [classify(url, images[1]!), classify(url, images[2]!)];
    for (let i = 0; i < 600 && app.batcher.depth < 2; i++) await sleep(10);
    assert.is(app.batcher.depth, 2);
    const refused = await classify(url, images[3]!);
    assert.is(refused.status, 503);
    assert.is(refused.retryAfter, '1');
    assert.match(refused.error!, /queue is full/);
    release();
    for (const a of await Promise.all([first, ...queued])) assert.is(a.status, 200, JSON.stringify(a));
    const text = await app.metrics.registry.metrics();
    assert.is(metric(text, 'resnet_ts_http_requests_total', 'code="503",route="/v1/classify"'), 1);
    assert.is(metric(text, 'resnet_ts_batch_size_count'), 3);
  } finally {
    release();
    await app.close();
  }
});

test('when the session dies, classify answers 500 with the reason and /healthz turns 503', async () => {
  const app = createClassifyServer({ session: await inference.session(new Exit()), model: 'exits', maxDelayMs: 0 });
  const { url } = await app.listen(0);
  try {
    const a = await classify(url, images[0]!);
    assert.is(a.status, 500);
    assert.match(a.error!, /exited with code 3/);
    const h = await fetch(new URL('healthz', url));
    assert.is(h.status, 503);
    assert.is(((await h.json()) as { status: string }).status, 'failed');
  } finally {
    await app.close();
  }
});

test.run();
