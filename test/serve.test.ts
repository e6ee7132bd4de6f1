// `resnet-ts serve` as a child process on a loopback port, with real HTTP requests: predictions against
// torchvision (Debian's torch 1.13 + torchvision 0.14, same seeded weights and image), every kind of bad
// input answered with a 4xx JSON error while the server keeps serving, and the page in headless Chromium.
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import sharp from 'sharp';
import { decodeImage } from '../lib/data/index.ts';
import { evalBatch } from '../lib/data/imagenet.ts';
import { explain, models, tidy } from '../lib/index.ts';
import { root } from './helpers.ts';
import { jpeg, metric, startServer, stopServers, torchvisionFixture, type Child, type Fixture } from './serve-child.ts';

let server: Child;
let oracle: Fixture;
let pngPath: string;

interface Pred { index: number; wnid: string | null; label: string; probability: number }
interface Answer { model: string; predictions: Pred[]; results?: { file: string; predictions: Pred[] }[]; ms: number; error?: string }

async function post(body: Buffer | FormData | string, { path = 'v1/classify', type = 'image/png', method = 'POST' } = {}): Promise<{ status: number; headers: Headers; json: Answer }> {
  const res = await fetch(new URL(path, server.url), { method, body, headers: type ? { 'content-type': type } : {} });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Answer };
}

/** A PNG by hand: 8-bit RGB, the given scanlines deflated into one IDAT. */
function png(width: number, height: number, rows: Buffer): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, body.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

test.before(async () => {
  oracle = torchvisionFixture();
  pngPath = oracle.png;
  server = await startServer(['--model', 'resnet18', '--weights', oracle.weights, '--max-body', '1mb', '--max-pixels', '4000000', '--warmup', '1,2']);
});

test.after(() => {
  stopServers();
});

test('POST /v1/classify: the top-5 of torchvision for the same weights and image', async () => {
  // Our preprocessing differs from PIL's by <= 0.01 on average (imagenet-preprocess test): far below this gap.
  assert.ok(oracle.margin > 0.03, `the oracle's top-6 logits are too close to order (${oracle.margin})`);
  const { status, json } = await post(readFileSync(pngPath));
  assert.is(status, 200, JSON.stringify(json));
  assert.is(json.model, 'resnet18');
  assert.ok(json.ms > 0);
  assert.equal(json.predictions.map((p) => p.index), oracle.indices);
  assert.equal(json.predictions.map((p) => p.label), oracle.labels);
  json.predictions.forEach((p, j) => {
    assert.ok(Math.abs(p.probability - oracle.probabilities[j]!) < 2e-3, `${p.label}: ${p.probability} vs torchvision ${oracle.probabilities[j]}`);
    assert.match(p.wnid!, /^n\d{8}$/);
  });
});

test('--warmup: the worker ran the sizes before the server listened; bad values are usage errors (exit 2) before any loading', () => {
  assert.match(server.output(), /warming up batch sizes 1, 2 in each worker[^]*warmed up in [\d.]+ s[^]*on http/);
  for (const [args, message] of [[['--warmup', '0'], /--warmup.*expected 'all' or batch sizes/], [['--warmup', '1,64', '--max-batch', '32'], /batch size 64 is larger than --max-batch \(32\)/]] as const) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/serve.ts'), '--model', 'resnet18', '--weights', 'no-such.pth', ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  }
});

test('multipart/form-data with several images, and ?k=', async () => {
  const form = new FormData();
  form.append('first', new Blob([readFileSync(pngPath)], { type: 'image/png' }), 'tv.png');
  form.append('note', 'not a file, ignored');
  form.append('second', new Blob([await jpeg(180, 120, 3)], { type: 'image/jpeg' }), 'noise.jpg');
  const res = await fetch(new URL('v1/classify?k=3', server.url), { method: 'POST', body: form });
  const json = (await res.json()) as Answer;
  assert.is(res.status, 200, JSON.stringify(json));
  assert.equal(json.results!.map((r) => r.file), ['tv.png', 'noise.jpg']);
  assert.ok(json.results!.every((r) => r.predictions.length === 3));
  assert.equal(json.results![0]!.predictions.map((p) => p.index), oracle.indices.slice(0, 3));
  assert.equal(json.predictions, json.results![0]!.predictions);
});

test('bad input is a 4xx JSON error and the server keeps serving', async () => {
  const good = readFileSync(pngPath);
  const bigJpeg = await jpeg(400, 300, 9);
  const cases: Array<[what: string, status: number, send: () => Promise<{ status: number; headers: Headers; json: Answer }>]> = [
    ['not an image', 415, () => post(Buffer.from('definitely not an image'))],
    ['a GIF', 415, () => post(Buffer.from('R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==', 'base64'), { type: 'image/gif' })],
    ['an empty body', 400, () => post(Buffer.alloc(0))],
    ['a truncated JPEG', 400, () => post(bigJpeg.subarray(0, bigJpeg.length >> 1), { type: 'image/jpeg' })],
    ['a truncated PNG', 400, () => post(good.subarray(0, good.length >> 1))],
    // 3000 x 3000 black pixels deflate to ~26 KB: a real decompression bomb against --max-pixels 4000000.
    ['a decompression bomb', 413, () => post(png(3000, 3000, Buffer.alloc(3000 * (1 + 3000 * 3))))],
    ['a header claiming 30000 x 30000', 413, () => post(png(30000, 30000, Buffer.alloc(2 * (1 + 30000 * 3))))],
    ['a body over --max-body', 413, () => post(Buffer.alloc(1_200_000, 1))],
    ['k=0', 400, () => post(good, { path: 'v1/classify?k=0' })],
    ['k=abc', 400, () => post(good, { path: 'v1/classify?k=abc' })],
    ['k above the class count', 400, () => post(good, { path: 'v1/classify?k=1001' })],
    ['a form without a file', 400, async () => { const f = new FormData(); f.append('a', 'b'); return post(f, { type: '' }); }],
    ['GET on /v1/classify', 405, async () => { const r = await fetch(new URL('v1/classify', server.url)); return { status: r.status, headers: r.headers, json: (await r.json()) as Answer }; }],
    ['DELETE on /', 405, () => post('', { path: '', method: 'DELETE', type: '' })],
    ['a wrong path', 404, () => post(good, { path: 'v2/classify' })],
  ];
  for (const [what, status, send] of cases) {
    const r = await send();
    assert.is(r.status, status, `${what}: ${JSON.stringify(r.json)}`);
    assert.type(r.json.error, 'string', what);
    if (status === 405) assert.ok(r.headers.get('allow'), `${what}: no Allow header`);
    const ok = await post(good);
    assert.is(ok.status, 200, `after ${what} the server stopped serving: ${JSON.stringify(ok.json)}`);
  }
  // A chunked body (no Content-Length) over the limit is cut off while streaming.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = request(new URL('v1/classify', server.url), { method: 'POST', headers: { 'content-type': 'image/jpeg' } }, (res) => { res.resume(); resolve(res.statusCode!); });
    req.on('error', reject);
    for (let i = 0; i < 20; i++) req.write(Buffer.alloc(100_000, 7));
    req.end();
  });
  assert.is(chunked, 413);
  const text = await (await fetch(new URL('metrics', server.url))).text();
  assert.is(metric(text, 'resnet_ts_http_requests_total', 'code="413",route="/v1/classify"'), 4);
  assert.is(metric(text, 'resnet_ts_http_requests_total', 'code="415",route="/v1/classify"'), 2);
  assert.is(metric(text, 'resnet_ts_http_requests_total', 'code="404",route="other"'), 1);
  assert.ok(metric(text, 'resnet_ts_http_requests_total', 'code="200",route="/v1/classify"') >= cases.length);
  assert.is(server.proc.exitCode, null);
});

test('GET /healthz and /metrics (Prometheus text: requests, latency, batch sizes, queue depth, images/s, event loop)', async () => {
  const h = await fetch(new URL('healthz', server.url));
  assert.is(h.status, 200);
  assert.equal(await h.json(), { status: 'ok', model: 'resnet18', queue: 0 });
  const m = await fetch(new URL('metrics', server.url));
  assert.match(m.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  const text = await m.text();
  for (const name of ['resnet_ts_http_requests_total', 'resnet_ts_http_request_duration_seconds_bucket', 'resnet_ts_batch_size_bucket',
    'resnet_ts_queue_depth', 'resnet_ts_images_per_second', 'resnet_ts_images_total', 'nodejs_eventloop_lag_p99_seconds']) {
    assert.ok(text.includes(`\n${name}`), `missing ${name}`);
  }
  assert.is(metric(text, 'resnet_ts_queue_depth'), 0);
  const rate = metric(text, 'resnet_ts_images_per_second');
  assert.ok(Number.isFinite(rate) && rate >= 0, `images/s ${rate}`);
  assert.is(metric(text, 'resnet_ts_batch_size_sum'), metric(text, 'resnet_ts_images_total'));
});

test('POST /v1/explain?class=: the overlay PNG of explain.gradCam in this process on the same weights and image; bad input is a 400', async () => {
  const m = (await models.create('resnet18', { weights: oracle.weights })).eval();
  const img = await decodeImage(readFileSync(pngPath));
  const expected = (classIndex: number): Uint8Array => {
    const map = tidy(() => explain.gradCam(m, evalBatch([img], { resize: 256, crop: 224 }), { layer: 'layer4', classIndex }).cam.toArray() as Float32Array);
    return explain.overlayHeatmap(explain.seenCrop(img, 256, 224), map).data;
  };
  for (const [query, index] of [['', oracle.indices[0]!], ['?class=3', 3]] as const) {
    const res = await fetch(new URL(`v1/explain${query}`, server.url), { method: 'POST', body: readFileSync(pngPath), headers: { 'content-type': 'image/png' } });
    assert.is(res.status, 200, await res.clone().text());
    assert.is(res.headers.get('content-type'), 'image/png');
    assert.equal([Number(res.headers.get('x-class-index')), decodeURIComponent(res.headers.get('x-class-label')!)], [index, models.weights('resnet18')[0]!.categories[index]]);
    const { data, info } = await sharp(Buffer.from(await res.arrayBuffer())).raw().toBuffer({ resolveWithObject: true });
    assert.equal([info.width, info.height, info.channels], [224, 224, 3]);
    const want = expected(index);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(data[i]! - want[i]!));
    assert.ok(worst <= 1, `${query}: overlay differs by up to ${worst}`);
  }
  for (const q of ['?class=1000', '?class=-1', '?class=cat']) assert.is((await post(readFileSync(pngPath), { path: `v1/explain${q}` })).status, 400, q);
  const form = new FormData();
  form.append('a', new Blob([readFileSync(pngPath)], { type: 'image/png' }), 'a.png');
  form.append('b', new Blob([readFileSync(pngPath)], { type: 'image/png' }), 'b.png');
  const two = await post(form, { path: 'v1/explain', type: '' });
  assert.equal([two.status, two.json.error], [400, 'explain takes one image; got 2']);
  assert.is((await post(Buffer.from('not an image'), { path: 'v1/explain' })).status, 415);
  m.dispose();
});

test('the page in headless Chromium: pick the torchvision image, read the five labels torchvision gives', async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  try {
    const page = await browser.newPage();
    const elsewhere: string[] = [];
    page.on('request', (r) => { if (!r.url().startsWith(server.url) && !/^(blob|data):/.test(r.url())) elsewhere.push(r.url()); });
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(server.url);
    assert.match(await page.title(), /resnet18/);
    await page.setInputFiles('#file', pngPath);
    await page.locator('#predictions li').nth(4).waitFor();
    const labels = await page.$$eval('#predictions li .label', (els) => els.map((e) => e.textContent));
    const widths = await page.$$eval('#predictions .bar i', (els) => els.map((e) => parseFloat(e.getAttribute('style')!.replace(/^width:\s*/, ''))));
    assert.equal(labels, oracle.labels);
    assert.ok(widths.every((w, i) => Math.abs(w - 100 * oracle.probabilities[i]!) < 0.5), `bar widths ${widths}`);
    assert.ok(await page.isVisible('#preview'), 'the image is not shown');
    // The Grad-CAM of the top class shows beside the bars; clicking the second class explains that one.
    await page.locator('#cam-caption').filter({ hasText: `Grad-CAM: ${oracle.labels[0]}` }).waitFor();
    assert.is(await page.$eval('#cam', (e) => (e as unknown as { naturalWidth: number }).naturalWidth), 224);
    await page.locator('#predictions li').nth(1).click();
    await page.locator('#cam-caption').filter({ hasText: `Grad-CAM: ${oracle.labels[1]}` }).waitFor();
    assert.is(await page.getAttribute('#cam', 'data-index'), String(oracle.indices[1]));
    assert.equal(elsewhere, [], 'the page fetched something other than the server');
    assert.equal(errors, []);
  } finally {
    await browser.close();
  }
});

test.run();
