// Checkpoints: the SHA-256 covers the JSON metadata as well as the tensors, and a refused checkpoint
// changes nothing (model, optimizer, RNG). References: the bytes written by saveCheckpoint edited by
// hand, and the model's, optimizer's and generator's state read before the load.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { F, getRngState, manualSeed, randn, tensor, tidy } from '../lib/index.ts';
import { Sequential, Conv2d, BatchNorm2d, ReLU, AdaptiveAvgPool2d, Flatten, Linear } from '../lib/nn/index.ts';
import { SGD, noDecayOnNormAndBias } from '../lib/optim/index.ts';
import { loadCheckpoint, readCheckpoint, saveCheckpoint } from '../lib/train/index.ts';
import { tmp } from './helpers.ts';

function tiny(seed: number, grouped: boolean) {
  manualSeed(seed);
  const model = new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(4, 10));
  const params = grouped ? noDecayOnNormAndBias(model.namedParameters(), 1e-4) : model.parameters();
  const opt = new SGD(params, { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
  return { model, opt };
}

/** One SGD step, so the optimizer holds momentum buffers. */
function step({ model, opt }: ReturnType<typeof tiny>): void {
  tidy(() => {
    F.crossEntropy(model.forward(randn([4, 1, 8, 8])), tensor([1, 2, 3, 4], { dtype: 'int64' })).backward();
    opt.step();
  });
}

/** The file with one ASCII string of its safetensors header replaced by another of the same length. */
function edited(path: string, from: string, to: string): string {
  const bytes = readFileSync(path);
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, headerEnd).toString('latin1');
  assert.is(from.length, to.length);
  assert.ok(header.includes(from), `${from} is not in the header`);
  const out = join(tmp(), 'edited.safetensors');
  writeFileSync(out, Buffer.concat([bytes.subarray(0, 8), Buffer.from(header.replace(from, to), 'latin1'), bytes.subarray(headerEnd)]));
  return out;
}

test('the checksum covers the metadata: an edited epoch or learning rate is refused', () => {
  const a = tiny(0, false);
  step(a);
  const path = join(tmp(), 'ckpt.safetensors');
  saveCheckpoint(path, a.model, a.opt, { epoch: 3, batch: 0, globalStep: 30, scheduler: { steps: 30 } });
  const b = tiny(1, false);
  assert.is(loadCheckpoint(path, b.model, b.opt).epoch, 3, 'the unedited file loads');
  for (const [from, to] of [['\\"epoch\\":3', '\\"epoch\\":1'], ['\\"lr\\":0.05', '\\"lr\\":0.01']]) {
    const c = tiny(1, false);
    assert.throws(() => loadCheckpoint(edited(path, from!, to!), c.model, c.opt), /refused: checksum mismatch/, `${from} -> ${to}`);
    assert.is(c.opt.groups[0]!.lr, 0.05);
  }
});

test('a refused checkpoint changes nothing: weights, optimizer state and RNG are as before', () => {
  const a = tiny(0, true);
  step(a);
  const path = join(tmp(), 'ckpt.safetensors');
  saveCheckpoint(path, a.model, a.opt, { epoch: 1, batch: 0, globalStep: 1, scheduler: { steps: 1 } });
  // The same net with one parameter group: the model part fits, the optimizer part does not.
  const b = tiny(5, false);
  const weights = Object.fromEntries(Object.entries(b.model.stateDict()).map(([k, t]) => [k, Array.from(t.toArray() as ArrayLike<number | bigint>, Number)]));
  const rng = Array.from(getRngState().toArray() as Uint8Array);
  assert.throws(() => loadCheckpoint(path, b.model, b.opt), /refused: its optimizer has 2 parameter groups, the run's 1/);
  for (const [k, t] of Object.entries(b.model.stateDict())) assert.equal(Array.from(t.toArray() as ArrayLike<number | bigint>, Number), weights[k], `${k} was overwritten`);
  assert.equal(Object.keys(b.opt.stateDict().tensors), []);
  assert.equal(Array.from(getRngState().toArray() as Uint8Array), rng);
  assert.not.equal(weights['0.weight'], Array.from(a.model.stateDict()['0.weight']!.toArray() as Float32Array), 'the two nets must differ for this to prove anything');
  // readCheckpoint verifies without applying; apply() then restores.
  const c = tiny(5, true);
  const ck = readCheckpoint(path, c.model, c.opt);
  assert.equal(Array.from(c.model.stateDict()['0.weight']!.toArray() as Float32Array), weights['0.weight']);
  ck.apply();
  ck.dispose();
  assert.equal(Array.from(c.model.stateDict()['0.weight']!.toArray() as Float32Array), Array.from(a.model.stateDict()['0.weight']!.toArray() as Float32Array));
});

test.run();
