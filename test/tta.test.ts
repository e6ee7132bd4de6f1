// Flip test-time augmentation against the mean of two explicit forwards (the mirror built by hand in JS), in logit
// and probability space, and FlipTTA scored by evaluate() against accuracy and loss computed by hand.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { models, data, train, tensor, rand, noGrad, Tensor } from '../lib/index.ts';
import { mirror } from './fixtures/mirror.ts';

const values = (t: Tensor): number[] => Array.from(t.toArray() as Float32Array);

const model = models.resnet20({ inChannels: 1, numClasses: 5 }).eval();
const x = rand([3, 1, 28, 28]);
const [plain, flipped] = noGrad(() => [values(model.forward(x)), values(model.forward(mirror(x)))]);

test('logits mode: (f(x) + f(mirror x)) / 2 of two explicit forwards', () => {
  const got = values(noGrad(() => train.ttaForward(model, x)));
  const want = plain!.map((a, i) => (a + flipped![i]!) / 2);
  assert.ok(got.every((g, i) => Math.abs(g - want[i]!) < 1e-6), `${got} vs ${want}`);
  // The mirror matters: a single forward is something else.
  assert.ok(got.some((g, i) => Math.abs(g - plain![i]!) > 1e-4));
});

test('probs mode: log of the mean of the two softmaxes, computed by hand in float64', () => {
  const got = values(noGrad(() => train.ttaForward(model, x, { mode: 'probs' })));
  const softmax = (row: number[]): number[] => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };
  for (let i = 0; i < 3; i++) {
    const pa = softmax(plain!.slice(i * 5, i * 5 + 5));
    const pb = softmax(flipped!.slice(i * 5, i * 5 + 5));
    for (let k = 0; k < 5; k++) assert.ok(Math.abs(got[i * 5 + k]! - Math.log((pa[k]! + pb[k]!) / 2)) < 1e-5, `row ${i} class ${k}`);
  }
  assert.throws(() => train.ttaForward(model, x, { mode: 'mean' as 'logits' }), /mode must be 'logits' or 'probs'/);
  assert.throws(() => train.ttaForward(model, x.flatten(2)), /expected an NCHW batch/);
});

test('evaluate(new FlipTTA(model)) scores the averaged logits: top-1 and cross-entropy by hand', async () => {
  const n = 6;
  const images = Uint8Array.from({ length: n * 28 * 28 }, (_, i) => (i * 37) % 256);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 5);
  const set: data.ArrayDataset = { name: 'synthetic', images, labels, shape: [1, 28, 28], classes: ['a', 'b', 'c', 'd', 'e'], mean: [0.5], std: [0.25] };
  const loader = new data.DataLoader(data.arraySource(set), { batchSize: 4 });
  const r = await train.evaluate(new train.FlipTTA(model), loader);
  const xs = tensor(Float32Array.from(images, (v) => v / 255), { shape: [n, 1, 28, 28] });
  const [a, b] = noGrad(() => [values(model.forward(xs)), values(model.forward(mirror(xs)))]);
  let correct = 0;
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const row = a!.slice(i * 5, i * 5 + 5).map((v, k) => (v + b![i * 5 + k]!) / 2);
    if (row.indexOf(Math.max(...row)) === labels[i]) correct++;
    const m = Math.max(...row);
    loss += m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0)) - row[labels[i]!]!;
  }
  assert.is(r.images, n);
  assert.is(r.top1, correct / n);
  assert.ok(Math.abs(r.loss - loss / n) < 1e-5, `${r.loss} vs ${loss / n}`);
  assert.ok(!model.training, 'evaluate restores the wrapped model to its mode');
});

test.run();
