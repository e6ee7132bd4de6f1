// `npm run experiment -- densenet` with two seeds: DenseNet-BC parameter and multiply-add counts worked out by hand
// from Huang et al.'s layer definitions, each net's mean and range over the seeds from the runs' own summary.json
// files (table.md and results.json), and the parameter-efficiency verdict recomputed from those numbers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExperimentResults } from '../lib/experiments/index.ts';
import { root, tmp } from './helpers.ts';

const SCRIPT = join(root, 'scripts', 'experiment.ts');
const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, ...args], { cwd: root, encoding: 'utf8', timeout: 600_000 });

/** DenseNet-BC (L, k) on 1x28x28 with 10 classes, layer by layer: parameters and conv/fc multiply-adds. */
function denseBC(depth: number, k: number): { params: number; macs: number } {
  const n = (depth - 4) / 6;
  let c = 2 * k;
  let params = 9 * c;
  let macs = 28 * 28 * 9 * c;
  [28, 14, 7].forEach((side, b) => {
    for (let i = 0; i < n; i++) {
      // BN(c) - 1x1 conv to 4k - BN(4k) - 3x3 conv to k.
      params += 2 * c + 4 * k * c + 2 * 4 * k + 9 * 4 * k * k;
      macs += side * side * (4 * k * c + 9 * 4 * k * k);
      c += k;
    }
    if (b < 2) {
      // Transition: BN - 1x1 conv halving the channels (at the block's resolution) - 2x2 average pool.
      const out = Math.floor(c / 2);
      params += 2 * c + c * out;
      macs += side * side * c * out;
      c = out;
    }
  });
  return { params: params + 2 * c + 10 * c + 10, macs: macs + 10 * c };
}

/** The 6n+2 ResNet with option A shortcuts on 1x28x28 (as test/experiment.test.ts counts it). */
function resnet(n: number): { params: number; macs: number } {
  let params = 9 * 16 + 2 * 16;
  let macs = 28 * 28 * 9 * 16;
  let inP = 16;
  [16, 32, 64].forEach((w, s) => {
    for (let i = 0; i < n; i++) {
      const conv = 9 * inP * w + 9 * w * w;
      params += conv + 4 * w;
      macs += [28, 14, 7][s]! ** 2 * conv;
      inP = w;
    }
  });
  return { params: params + 650, macs: macs + 640 };
}

const HAND: Record<string, { params: number; macs: number }> = {
  resnet14: resnet(2), densenet_bc_40_k12: denseBC(40, 12), resnet20: resnet(3), densenet_bc_52_k12: denseBC(52, 12), resnet56: resnet(9),
};
const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
const tableOf = (md: string): string[][] => md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| run ')).map((l) => l.slice(2, -2).split(' | '));

test('--plan: the five nets with parameters and mult-adds as counted by hand; equal-budget pairs within 4 % in parameters', () => {
  const r = run(['densenet', '--plan']);
  assert.is(r.status, 0, r.stderr);
  const rows = tableOf(r.stdout);
  assert.equal(rows.map((c) => c[1]), Object.keys(HAND));
  for (const row of rows) assert.equal([Number(row[3]), Number(row[4])], [HAND[row[1]!]!.params, HAND[row[1]!]!.macs], row[1]);
  for (const [a, b] of [['resnet14', 'densenet_bc_40_k12'], ['resnet20', 'densenet_bc_52_k12']] as const) {
    assert.ok(Math.abs(HAND[a]!.params / HAND[b]!.params - 1) < 0.04, `${a} vs ${b}`);
  }
  assert.match(r.stdout, /seeds 0\n/);
  assert.match(run(['degradation', '--plan', '--scale', 'medium']).stdout, /all train \/ all test images.*seeds 0, 1/);
});

test('two seeds: each net\'s mean and range come from its seeds\' summary.json files; the verdict follows from them', () => {
  const out = tmp();
  const r = run(['densenet', '--seeds', '0,1', '--limit-train', '96', '--limit-test', '60', '--epochs', '1', '--threads', '1', '--quiet', '--out', out]);
  assert.is(r.status, 0, r.stderr);
  const dir = join(out, 'densenet');
  const res = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as ExperimentResults;
  const rows = tableOf(readFileSync(join(dir, 'table.md'), 'utf8'));
  assert.equal(res.seeds, [0, 1]);
  const errs: Record<string, { train: number; test: number }> = {};
  res.runs.forEach((x, i) => {
    const s = [0, 1].map((seed) => JSON.parse(readFileSync(join(dir, `${x.id}-seed${seed}`, 'summary.json'), 'utf8')));
    assert.equal(s.map((y) => y.flags.seed), [0, 1]);
    const train = s.map((y) => 1 - y.trainAccuracy);
    const testE = s.map((y) => 1 - y.testAccuracy);
    const mean = (v: number[]) => (v[0]! + v[1]!) / 2;
    assert.ok(Math.abs(x.trainError - mean(train)) < 1e-12 && Math.abs(x.testError - mean(testE)) < 1e-12, x.id);
    assert.equal([x.params, x.multAdds], [HAND[x.id]!.params, HAND[x.id]!.macs], x.id);
    const cell = (v: number[]) => `${pct(mean(v))} (${(100 * Math.min(...v)).toFixed(2)}–${(100 * Math.max(...v)).toFixed(2)})`;
    assert.equal([rows[i]![4], rows[i]![5]], [cell(train), cell(testE)], x.id);
    assert.equal([x.curve.trainMin, x.curve.trainMax], [[Math.min(...train)], [Math.max(...train)]], x.id);
    errs[x.id] = { train: mean(train), test: mean(testE) };
  });
  // DenseNet-BC better at both equal budgets, and BC-52 (0.31x ResNet-56's parameters) within two standard errors or better.
  const pairs = [errs.densenet_bc_40_k12!.test < errs.resnet14!.test, errs.densenet_bc_52_k12!.test < errs.resnet20!.test];
  const [a, b] = [errs.densenet_bc_52_k12!.test, errs.resnet56!.test];
  const third = a <= b + 2 * Math.sqrt((a * (1 - a) + b * (1 - b)) / 60);
  const want = pairs.every(Boolean) && third ? true : !pairs.some(Boolean) && !third ? false : null;
  assert.is(res.finding.reproduced, want, res.finding.text);
});

test.run();
