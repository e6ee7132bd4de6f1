// The best recipe's pieces as train features, checked in runs: the EMA a run evaluates and checkpoints against
// an average computed by hand from the weights after each step (and continued exactly by a resumed run), its
// flip TTA against two explicit forwards with the mirror built in JS, label smoothing against the smoothed
// cross-entropy by hand, random erasing and crop-flip against their definitions on the loader's batches, and
// `train --recipe best` with overrides against the flags it documents.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad, Tensor } from '../lib/index.ts';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential, type Module } from '../lib/nn/index.ts';
import { loadSafetensors } from '../lib/io/index.ts';
import { arrayData, buildModel, buildTraining, checkpointWeights, fit, RecipeError, RunFiles, type Recipe, type StepFactory, eagerStep } from '../lib/train/index.ts';
import type { ArrayDataset } from '../lib/data/index.ts';
import { root, tmp } from './helpers.ts';
import { mirror } from './fixtures/mirror.ts';

const values = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);

/** n images of side s whose pixels never normalise to exactly 0 (mean 0.5 is not a byte value / 255). */
function dataset(n: number, s: number, seed: number): ArrayDataset {
  let x = seed;
  const next = (): number => (x = (x * 1103515245 + 12345) % 2147483648);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 4);
  // Each class gets its own brightness offset, so the net has something to learn.
  const images = Uint8Array.from({ length: n * s * s }, (_, i) => (labels[Math.floor(i / (s * s))]! * 40 + (next() % 96)) & 255);
  return { name: 'synthetic', images, labels, shape: [1, s, s], classes: ['a', 'b', 'c', 'd'], mean: [0.5], std: [0.25] };
}
const DATA = arrayData(dataset(96, 8, 1), dataset(40, 8, 2));

const RECIPE: Recipe = {
  model: 'tiny', data: 'synthetic', epochs: 2, batchSize: 16, evalBatchSize: 16, optimizer: 'sgd', lr: 0.2, momentum: 0.9, nesterov: false,
  weightDecay: 0, decayNormAndBias: false, schedule: 'constant', warmupEpochs: 0, labelSmoothing: 0, augment: 'none', cropPadding: 0, seed: 5, syncBn: false,
};
const build = ({ inChannels, numClasses }: { inChannels: number; numClasses: number }): Module =>
  new Sequential(new Conv2d(inChannels, 6, 3, { padding: 1 }), new BatchNorm2d(6), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(6, numClasses));
const CTX = { device: 'cpu' as const, build, workers: 0 };

/** Every state-dict entry as float64 numbers. */
const snapshot = (m: Module): Record<string, number[]> => Object.fromEntries(Object.entries(m.stateDict()).map(([k, t]) => [k, values(t)]));

/** Mean cross-entropy (with label smoothing eps) and correct top-1 of logits rows, in float64. */
function crossEntropy(logits: number[], labels: number[], classes: number, eps = 0): { loss: number; correct: number } {
  let loss = 0;
  let correct = 0;
  labels.forEach((y, i) => {
    const row = logits.slice(i * classes, (i + 1) * classes);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
    const nll = row.map((v) => lse - v);
    loss += (1 - eps) * nll[y]! + (eps * nll.reduce((a, b) => a + b, 0)) / classes;
    if (row.indexOf(max) === y) correct++;
  });
  return { loss: loss / labels.length, correct };
}

/** Trains RECIPE with extra fields, recording the weights after every step; stopAfter stops (a checkpoint) after that many steps. */
async function run(extra: Partial<Recipe>, dir: string, o: { stopAfter?: number; resume?: boolean } = {}) {
  const r: Recipe = { ...RECIPE, ...extra };
  const t = buildTraining(r, DATA, CTX);
  const after: Record<string, number[]>[] = [snapshot(t.model)];
  const step: StepFactory = (parts) => {
    const eager = eagerStep(parts);
    return (b, agree) => {
      const res = eager(b, agree);
      after.push(snapshot(t.model));
      return res;
    };
  };
  let steps = 0;
  const res = await fit({ ...t, outDir: dir, quiet: true, logEvery: 1, step, resume: o.resume, shouldStop: () => ++steps === o.stopAfter });
  return { t, res, after };
}

const ckptTensors = (dir: string, prefix: string): Record<string, Tensor> => Object.fromEntries(
  Object.entries(loadSafetensors(join(dir, 'checkpoint.safetensors'))).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));

/** The test split's accuracy and mean loss of a model, with flip TTA from an explicit mirror or without. */
async function scoreByHand(model: Module, tta = true): Promise<{ top1: number; loss: number }> {
  model.eval();
  let correct = 0;
  let loss = 0;
  let n = 0;
  for await (const b of buildTraining(RECIPE, DATA, CTX).test.epoch(0)) {
    const [a, f] = noGrad(() => [values(model.forward(b.x)), tta ? values(model.forward(mirror(b.x))) : []]);
    const ce = crossEntropy(tta ? a.map((v, j) => (v + f[j]!) / 2) : a, values(b.y), 4);
    correct += ce.correct;
    loss += ce.loss * b.y.shape[0]!;
    n += b.y.shape[0]!;
  }
  return { top1: correct / n, loss: loss / n };
}

test('--ema with --tta in a run: the checkpointed average is the hand-computed EMA, and the test numbers are its flip-TTA scores', async () => {
  const d = 0.8;
  const dir = tmp();
  const { after, res } = await run({ emaDecay: d, tta: true }, dir);
  assert.is(after.length, 13);
  // timm's update(model, step): step 1 copies the weights (decay 0), later steps average; integer buffers are copied.
  const ema: Record<string, number[]> = { ...after[1]! };
  for (let s = 2; s < after.length; s++) {
    for (const [k, w] of Object.entries(after[s]!)) ema[k] = k.endsWith('num_batches_tracked') ? w : ema[k]!.map((e, i) => d * e + (1 - d) * w[i]!);
  }
  const saved = ckptTensors(dir, 'ema.');
  assert.equal(Object.keys(saved).sort(), Object.keys(ema).sort());
  for (const [k, want] of Object.entries(ema)) {
    const got = values(saved[k]!);
    const err = Math.max(...want.map((w, i) => Math.abs(got[i]! - w) / Math.max(1, Math.abs(w))));
    assert.ok(err < 1e-5, `${k}: ${err}`);
  }
  // The epoch's test numbers: flip TTA of a fresh net holding the average, computed with an explicit mirror.
  const net = buildModel(RECIPE, DATA, CTX);
  net.loadStateDict(saved);
  const want = await scoreByHand(net);
  const last = res.history.filter((h) => h.kind === 'epoch').at(-1)!;
  assert.is(last.kind === 'epoch' && last.testTop1, want.top1);
  assert.ok(last.kind === 'epoch' && Math.abs(last.testLoss! - want.loss) < 1e-5, `${last.kind === 'epoch' && last.testLoss} vs ${want.loss}`);
  // ... and not the raw model's.
  const raw = buildModel(RECIPE, DATA, CTX);
  raw.loadStateDict(ckptTensors(dir, 'model.'));
  assert.ok(Math.abs((await scoreByHand(raw)).loss - want.loss) > 1e-4, 'the raw model scores the same as the average');
});

test('a run with --ema stopped after 5 steps and resumed ends with the same average, bit for bit', async () => {
  const whole = tmp();
  await run({ emaDecay: 0.8 }, whole);
  const split = tmp();
  const first = await run({ emaDecay: 0.8 }, split, { stopAfter: 5 });
  assert.ok(first.res.interrupted);
  await run({ emaDecay: 0.8 }, split, { resume: true });
  const [a, b] = [ckptTensors(whole, 'ema.'), ckptTensors(split, 'ema.')];
  for (const k of Object.keys(a)) assert.equal(values(b[k]!), values(a[k]!), k);
  // Without --tta the run scores the average's plain forward.
  const net = buildModel(RECIPE, DATA, CTX);
  net.loadStateDict(a);
  const want = await scoreByHand(net, false);
  const last = RunFiles.readFinished(whole).summary;
  assert.is(last.testAccuracy, want.top1);
  assert.ok(Math.abs(last.testLoss! - want.loss) < 1e-5, `${last.testLoss} vs ${want.loss}`);
});

/** The first training batch a recipe's loader yields (after its transforms). */
async function firstBatch(r: Recipe, data = DATA): Promise<{ x: Tensor; y: Tensor }> {
  const t = buildTraining(r, data, CTX);
  for await (const b of t.train.epoch(0)) return b;
  throw new Error('empty loader');
}

test('--label-smoothing in a run: the first step\'s loss is the smoothed cross-entropy of the initial net, by hand', async () => {
  const r = { ...RECIPE, labelSmoothing: 0.3, epochs: 1 };
  const { res } = await run(r, tmp());
  const first = res.history.find((h) => h.kind === 'step')!;
  const b = await firstBatch(r);
  const net = buildModel(r, DATA, CTX).train();
  const want = crossEntropy(noGrad(() => values(net.forward(b.x))), values(b.y), 4, 0.3).loss;
  assert.ok(first.kind === 'step' && Math.abs(first.loss - want) < 1e-5, `${first.kind === 'step' && first.loss} vs ${want}`);
  const plain = crossEntropy(noGrad(() => values(buildModel(r, DATA, CTX).train().forward(b.x))), values(b.y), 4, 0).loss;
  assert.ok(Math.abs(plain - want) > 1e-3, 'smoothing changed nothing');
});

/** The images of the first training batch as [n][c*h*w] arrays. */
async function firstImages(r: Recipe, data = DATA): Promise<number[][]> {
  const b = await firstBatch(r, data);
  const v = values(b.x);
  const size = v.length / b.x.shape[0]!;
  return Array.from({ length: b.x.shape[0]! }, (_, i) => v.slice(i * size, (i + 1) * size));
}

test('--random-erasing 1 in a run: every training image differs from the un-erased batch in one box of zeros (the mean pixel) of 2-33 % of its area', async () => {
  const side = 16;
  const data = arrayData(dataset(32, side, 3), dataset(8, side, 4));
  const [plain, erased] = [await firstImages(RECIPE, data), await firstImages({ ...RECIPE, randomErasing: 1 }, data)];
  const shapes = new Set<string>();
  erased.forEach((img, i) => {
    const changed = img.flatMap((v, k) => (v !== plain[i]![k] ? [k] : []));
    assert.ok(changed.length > 0, `image ${i} was not erased`);
    const rows = changed.map((k) => Math.floor(k / side));
    const cols = changed.map((k) => k % side);
    const [top, bottom, left, right] = [Math.min(...rows), Math.max(...rows), Math.min(...cols), Math.max(...cols)];
    const [h, w] = [bottom - top + 1, right - left + 1];
    assert.is(changed.length, h * w, `image ${i}: the changed pixels are not a rectangle`);
    assert.ok(changed.every((k) => img[k] === 0), `image ${i}: the box is not the mean pixel`);
    assert.ok(h * w >= 0.02 * side * side && h * w <= 0.33 * side * side + 1 && h < side && w < side, `image ${i}: box ${h}x${w}`);
    shapes.add(`${h}x${w}`);
  });
  assert.ok(shapes.size > 4, `boxes of only ${[...shapes].join(', ')}`);
});

test('--augment crop-flip in a run: every training image is its source shifted by at most the padding (zero fill) and maybe mirrored', async () => {
  const side = 8;
  const pad = 2;
  const r = { ...RECIPE, augment: 'crop-flip' as const, cropPadding: pad, batchSize: 96 };
  // The loader's order depends on the seed and epoch only, so augment 'none' gives each image's source.
  const [batch, sources] = [await firstImages(r), await firstImages({ ...r, augment: 'none' })];
  const fill = (0 - 0.5) / 0.25;
  const kinds = new Set<string>();
  batch.forEach((img, i) => {
    const src = sources[i]!;
    let found = '';
    for (let dy = -pad; dy <= pad && !found; dy++) {
      for (let dx = -pad; dx <= pad && !found; dx++) {
        for (const flip of [false, true]) {
          const ok = img.every((v, k) => {
            const y = Math.floor(k / side) + dy;
            const xr = k % side;
            const x = (flip ? side - 1 - xr : xr) + dx;
            return v === (y < 0 || y >= side || x < 0 || x >= side ? fill : src[y * side + x]);
          });
          if (ok) {
            found = `${dy},${dx},${flip}`;
            break;
          }
        }
      }
    }
    assert.ok(found, `image ${i} is no shifted or mirrored copy of its source`);
    kinds.add(found);
  });
  assert.ok([...kinds].some((k) => k.endsWith('true')) && [...kinds].some((k) => k.endsWith('false')) && kinds.size > 10, `only ${[...kinds].join(' ')}`);
});

const train = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'train.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 300_000 });

test('train --recipe best sets the flags its --help lists; flags given override them, --no-ema and --no-tta turn pieces off', () => {
  const help = train(['--help']).stdout.replace(/\s+/g, ' ');
  const dir = tmp();
  const r = train(['--recipe', 'best', '--epochs', '1', '--limit-train', '64', '--limit-test', '32', '--batch-size', '32', '--lr', '0.05', '--no-tta', '--threads', '1', '--quiet', '--out', dir]);
  assert.is(r.status, 0, r.stderr);
  const f = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).flags;
  // The preset's values, as --help states them, except where the command line said otherwise.
  for (const [flag, key, value] of [['--model', 'model', 'resnet20'], ['--augment', 'augment', 'crop-flip'], ['--label-smoothing', 'labelSmoothing', 0.1],
    ['--random-erasing', 'randomErasing', 0.5], ['--ema-decay', 'emaDecay', 0.999], ['--schedule', 'schedule', 'cosine']] as const) {
    assert.ok(help.includes(`${flag} ${value}`), `--help does not list ${flag} ${value}`);
    assert.is(f[key], value, key);
  }
  assert.ok(help.includes('--nesterov') && f.nesterov === true && f.ema === true);
  assert.is(f.recipe, 'best');
  assert.is(f.epochs, 1);
  assert.is(f.lr, 0.05);
  assert.is(f.tta, false);
  assert.ok(Object.keys(ckptTensors(dir, 'ema.')).length > 0, 'no average in the checkpoint');
  // As weights (predict, serve, a fine-tune) the checkpoint is the average it reported, not the raw model.
  const asWeights = checkpointWeights(join(dir, 'checkpoint.safetensors')).stateDict;
  const [avg, raw] = [ckptTensors(dir, 'ema.'), ckptTensors(dir, 'model.')];
  assert.equal(Object.keys(asWeights).sort(), Object.keys(avg).sort());
  assert.ok(Object.keys(avg).every((k) => asWeights[k]!.equal(avg[k]!)) && Object.keys(raw).some((k) => !asWeights[k]!.equal(raw[k]!)));
  const off = tmp();
  assert.is(train(['--recipe', 'best', '--no-ema', '--epochs', '1', '--limit-train', '32', '--limit-test', '32', '--batch-size', '32', '--threads', '1', '--quiet', '--out', off]).status, 0);
  assert.is(Object.keys(ckptTensors(off, 'ema.')).length, 0);
  for (const bad of [['--ema-decay', '0.9'], ['--ema', '--ema-decay', '1'], ['--random-erasing', '1.5'], ['--recipe', 'fastest']]) {
    const e = train([...bad, '--epochs', '1', '--limit-train', '32']);
    assert.is(e.status, 2, `${bad.join(' ')}: ${e.stderr}`);
    assert.ok(/--ema|--random-erasing|--recipe/.test(e.stderr), e.stderr);
  }
});

test('buildTraining checks the recipe first: a misspelt choice or a value out of range is a RecipeError naming the field', () => {
  const cases: [Partial<Recipe>, string, RegExp][] = [
    [{ optimizer: 'SGD' as never }, 'optimizer', /must be one of 'sgd', 'adamw'; got "SGD"/],
    [{ schedule: 'Cosine' as never }, 'schedule', /must be one of 'cosine', 'multistep', 'onecycle', 'constant'; got "Cosine"/],
    [{ augment: undefined as never }, 'augment', /got undefined/],
    [{ lr: -0.1 }, 'lr', /must be a number > 0; got -0.1/],
    [{ batchSize: 0 }, 'batchSize', /a positive integer; got 0/],
    [{ weightDecay: undefined as never }, 'weightDecay', /a number >= 0; got undefined/],
    [{ seed: 1.5 }, 'seed', /an integer; got 1.5/],
    [{ nesterov: 'yes' as never }, 'nesterov', /true or false/],
  ];
  for (const [change, field, re] of cases) {
    try {
      buildTraining({ ...RECIPE, ...change }, DATA, CTX);
      assert.unreachable(`${field}: accepted`);
    } catch (e) {
      assert.instance(e, RecipeError, `${field}: ${(e as Error).message}`);
      assert.is((e as RecipeError).field, field);
      assert.match((e as Error).message, re);
    }
  }
});

test.run();
