// The GPU-only training steps, checked where this machine can: --oom-retry's sliced retry against the
// whole-batch step it must equal (an out-of-memory injected by a layer that refuses big batches, as the
// CUDA caching allocator would), and the clear refusals of --cuda-graph / --oom-retry / bench --cuda-graph
// where they cannot apply (CPU). The CUDA-graph step itself runs only in `npm run test:gpu`.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CudaOutOfMemoryError, cuda, manualSeed, nn, optim, randint, randn, train, type Tensor } from '../lib/index.ts';
import { maxAbsDiff, root } from './helpers.ts';

/** Fails every forward of more than `limit` images with the error the CUDA allocator raises. */
class RefusesBigBatches extends nn.Module {
  calls: number[] = [];
  constructor(readonly inner: nn.Module, readonly limit: number) {
    super();
  }
  forward(x: Tensor): Tensor {
    this.calls.push(x.shape[0]!);
    if (x.shape[0]! > this.limit) {
      const e = new CudaOutOfMemoryError(`CUDA out of memory. Tried to allocate ${x.shape[0]} MiB`);
      e.requestedBytes = x.shape[0]! * 2 ** 20;
      e.freeBytes = 0;
      throw e;
    }
    return this.inner.forward(x);
  }
}

// No BatchNorm: slices then give exactly the whole batch's gradients, up to float rounding.
const net = (): nn.Module => {
  manualSeed(7);
  return new nn.Sequential(new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.ReLU(), new nn.Flatten(), new nn.Linear(8 * 6 * 6, 10));
};
const parts = (model: nn.Module, optimizer: optim.SGD): train.StepParts => ({ model, optimizer, labelSmoothing: 0.1, device: 'cpu', clipGradNorm: 5 });
const flat = (m: nn.Module): number[] => m.parameters().flatMap((p) => Array.from(p.toArray() as Float32Array));

test('sliceSizes: near-equal, none empty, summing to n', () => {
  assert.equal(train.sliceSizes(10, 4), [3, 3, 2, 2]);
  assert.equal(train.sliceSizes(3, 8), [1, 1, 1]);
  assert.equal(train.sliceSizes(16, 1), [16]);
});

test('--oom-retry: an out-of-memory retries in 2, then 4 slices; the update equals the whole batch\'s; later batches keep 4', () => {
  const x = randn([16, 3, 6, 6]);
  const y = randint(0, 10, [16]);
  const ref = net();
  const refOpt = new optim.SGD(ref.parameters(), { lr: 0.5, momentum: 0.9, weightDecay: 1e-3 });
  const want = train.eagerStep(parts(ref, refOpt))({ x, y }, (l) => l);

  const guarded = new RefusesBigBatches(net(), 4);
  const opt = new optim.SGD(guarded.parameters(), { lr: 0.5, momentum: 0.9, weightDecay: 1e-3 });
  const retries: Array<[number, number, number]> = [];
  const step = train.withOomRetry(train.eagerStep, (chunks, n, e) => retries.push([chunks, n, e.requestedBytes]))(parts(guarded, opt));
  const got = step({ x, y }, (l) => l);
  assert.equal(retries, [[2, 16, 16 * 2 ** 20], [4, 16, 8 * 2 ** 20]]);
  assert.equal(guarded.calls, [16, 8, 4, 4, 4, 4]);
  assert.ok(Math.abs(got.loss - want.loss) < 1e-5, `loss ${got.loss} vs ${want.loss}`);
  assert.is(got.top1, want.top1);
  assert.is(got.top5, want.top5);
  const d = maxAbsDiff(flat(guarded.inner), flat(ref));
  assert.ok(d < 1e-6, `parameters after the sliced step differ from the whole-batch step by ${d}`);
  assert.ok(maxAbsDiff(flat(guarded.inner), flat(net())) > 1e-3, 'the step changed nothing');

  guarded.calls = [];
  step({ x, y }, (l) => l);
  assert.equal(guarded.calls, [4, 4, 4, 4]);
  assert.is(retries.length, 2);
  for (const t of [x, y]) t.dispose();
});

test('--oom-retry: a non-finite agreed loss updates nothing; other errors and an out-of-memory at one image are thrown', () => {
  const x = randn([4, 3, 6, 6]);
  const y = randint(0, 10, [4]);
  const guarded = new RefusesBigBatches(net(), 1);
  const opt = new optim.SGD(guarded.parameters(), { lr: 0.5 });
  const before = flat(guarded.inner);
  const r = train.withOomRetry(train.eagerStep)(parts(guarded, opt))({ x, y }, () => NaN);
  assert.ok(Number.isNaN(r.loss));
  assert.is(maxAbsDiff(flat(guarded.inner), before), 0);
  assert.ok(guarded.inner.parameters().every((p) => p.grad === null), 'gradients left behind');

  const never = new RefusesBigBatches(net(), 0);
  const step = train.withOomRetry(train.eagerStep)(parts(never, new optim.SGD(never.parameters(), { lr: 0.1 })));
  assert.throws(() => step({ x, y }, (l) => l), (e: Error) => e instanceof CudaOutOfMemoryError);
  assert.equal(never.calls, [4, 2, 1]);

  const broken = new RefusesBigBatches(net(), 100);
  broken.forward = () => {
    throw new Error('not memory');
  };
  const s2 = train.withOomRetry(train.eagerStep)(parts(broken, new optim.SGD(broken.parameters(), { lr: 0.1 })));
  assert.throws(() => s2({ x, y }, (l) => l), /not memory/);
  for (const t of [x, y]) t.dispose();
});

test('graphStep refuses where a CUDA graph cannot apply, with the reason', () => {
  const m = net();
  const opt = new optim.SGD(m.parameters(), { lr: 0.1 });
  assert.throws(() => train.graphStep(parts(m, opt)), (e: Error) => e instanceof train.CudaGraphError && /need a CUDA device; this run trains on cpu/.test(e.message));
  const onCuda = train.cudaGraphRefusal({ device: 'cuda' });
  if (!cuda.isBuilt()) assert.match(onCuda ?? '', /CPU-only/);
  else if (!cuda.isAvailable()) assert.match(onCuda ?? '', /none is available/);
  if (cuda.isAvailable()) {
    assert.match(train.cudaGraphRefusal({ device: 'cuda', amp: 'fp16' }) ?? '', /fp16/);
    assert.is(train.cudaGraphRefusal({ device: 'cuda', amp: 'bf16' }), null);
  }
});

const cli = (script: string, args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', script), ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });

test('train --cuda-graph / --oom-retry and bench --cuda-graph on the CPU: usage errors (exit 2) that say why', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['train.ts', ['--cuda-graph'], /--cuda-graph needs --device cuda/],
    ['train.ts', ['--oom-retry'], /--oom-retry applies only with --device cuda/],
    ['bench.ts', ['--cuda-graph'], /--cuda-graph needs --device cuda/],
  ];
  for (const [script, args, want] of cases) {
    const r = cli(script, args);
    assert.is(r.status, 2, `${script} ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, want);
  }
});

test.run();
