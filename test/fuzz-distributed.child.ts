// One rank of fuzz-distributed.test.ts, launched with torchrun variables. Both ranks draw the same
// sequence of calls (a generator seeded alike on every rank); for about half of them each rank then
// draws its own arguments (a generator seeded by rank), so the ranks pass tensors of different sizes,
// dtypes, layouts (stride-0, transposed, sliced), disposed handles and garbage into the collectives,
// the DDP reducer and SyncBatchNorm. Every call must return or throw, with the same outcome on both
// ranks and no timeout; successful collectives must compute the right values.
//
// Usage: node --import tsx test/fuzz-distributed.child.ts <seed> <calls> <logFile>
// Prints one line: FUZZD-RESULT {json}.
import { closeSync, openSync, writeSync } from 'node:fs';
import { distributed as dist, full, manualSeed, ones, randn, Tensor } from '../lib/index.ts';
import { native, type Handle } from '../lib/native.ts';

const [seedArg = '1', callsArg = '1000', logPath = '/dev/null'] = process.argv.slice(2);
const e = dist.envFromTorchrun();
if (!e) throw new Error('fuzz-distributed.child: run with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT');
const log = openSync(logPath, 'w');
dist.init(e, { backend: 'gloo', timeoutMs: 15_000 });

// mulberry32, as fuzz.child.ts: replayable from the seed.
function generator(s: number): () => number {
  let seed = s >>> 0;
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const shared = generator(Number(seedArg));
const own = generator(Number(seedArg) ^ Math.imul(e.rank + 1, 0x9e3779b9));
type Rand = () => number;
const pick = <T,>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

const me = e.rank + 1; // every rank fills its tensors with rank + 1: sums are 3, max 2, min 1 on 2 ranks
const made: Tensor[] = [];
const keep = (t: Tensor): Tensor => (made.push(t), t);

// A tensor argument: [label, handle-or-garbage, dense float-ish tensor whose values can be checked].
function tensorArg(r: Rand): [string, unknown, Tensor | null] {
  const shape = pick(r, [[4], [2, 3], [3, 2], [5], [1]]);
  const x = r();
  if (x < 0.45) {
    const dtype = pick(r, ['float32', 'float32', 'float64', 'int64', 'int32', 'float16', 'uint8', 'bool'] as const);
    const t = keep(full(shape, dtype === 'bool' ? 1 : me, { dtype }));
    return [`${dtype}[${shape}]`, t.h, dtype === 'bool' || dtype === 'float16' ? null : t];
  }
  if (x < 0.55) return [`expanded[${shape}]`, keep(keep(full([1], me)).expand(shape)).h, null];
  if (x < 0.62) return ['transposed[3,2]', keep(keep(full([2, 3], me)).transpose(0, 1)).h, null];
  if (x < 0.68) return ['sliced[::2]', keep(keep(full([8], me)).slice(0, 0, 8, 2)).h, null];
  if (x < 0.72) return ['channelsLast[1,3,2,2]', keep(keep(full([1, 3, 2, 2], me)).contiguous('channelsLast')).h, null];
  if (x < 0.76) return ['scalar', keep(full([], me)).h, null];
  if (x < 0.8) return ['empty[0]', keep(full([0], me)).h, null];
  if (x < 0.86) {
    const t = full(shape, me);
    t.dispose();
    return ['disposed', t.h, null];
  }
  return pick(r, [['null', null, null], ['7', 7, null], ["'x'", 'x', null], ['{}', {}, null], ['forged 5n', 5n, null]] as [string, unknown, null][]);
}

function tensorsArg(r: Rand): [string, unknown, (Tensor | null)[]] {
  if (r() < 0.06) return pick(r, [['not an array', 3, []], ['null', null, []]] as [string, unknown, never[]][]);
  const n = Math.floor(r() * 3) + (r() < 0.1 ? 0 : 1);
  const args = Array.from({ length: n }, () => tensorArg(r));
  return [`[${args.map((a) => a[0]).join(', ')}]`, args.map((a) => a[1]), args.map((a) => a[2])];
}

interface Outcome { ok: boolean; msg: string }
const outcomes: string[] = [];
let ok = 0;
let errors = 0;
let timeouts = 0;
const wrong: string[] = [];

function call(name: string, f: () => unknown): Outcome {
  try {
    f();
    return { ok: true, msg: '' };
  } catch (err) {
    const msg = err instanceof Error ? err.message : `threw ${typeof err}`;
    if (!(err instanceof Error)) wrong.push(`${name}: threw a non-Error`);
    if (/did not complete|timed out|timeout/i.test(msg)) timeouts++;
    return { ok: false, msg };
  }
}

function checkValues(name: string, ts: (Tensor | null)[], want: number): void {
  for (const t of ts) {
    if (!t) continue;
    const got = Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
    if (!got.every((v) => v === want)) wrong.push(`${name}: got ${got.join(',')}, want ${want}`);
  }
}

// First a fixed case: SyncBatchNorm without affine parameters or running statistics (what
// BatchNorm2d({ affine: false, trackRunningStats: false }) passes) over 3 + 5 images must equal
// training-mode batch norm over all 8, computed by this rank alone, and its backward must run.
{
  manualSeed(11); // the same global batch on both ranks
  const all = keep(randn([8, 3, 4, 4]));
  const [start, len] = e.rank === 0 ? [0, 3] : [3, 5];
  const part = keep(all.narrow(0, start, len).contiguous()).requiresGrad_();
  const r = call('distSyncBatchNorm without affine or running statistics', () => {
    const y = keep(new Tensor(native.distSyncBatchNorm(part.h, null, null, null, null, 1e-5, 0.1)));
    const ref = keep(keep(new Tensor(native.batchNorm(all.h, null, null, null, null, true, 0.1, 1e-5))).narrow(0, start, len));
    const diff = keep(keep(y.sub(ref)).abs()).max().item() as number;
    if (!(diff < 1e-5)) throw new Error(`differs from batch norm over the whole batch by ${diff}`);
    keep(y.sum()).backward();
  });
  if (!r.ok) wrong.push(`SyncBatchNorm without affine or running statistics: ${r.msg}`);
}

const N = Number(callsArg);
for (let i = 0; i < N; i++) {
  const target = pick(shared, ['allreduce', 'allreduce', 'broadcast', 'broadcast', 'reducer', 'syncbn', 'barrier', 'rank'] as const);
  // About half the calls draw their arguments per rank: the ranks then disagree more often than not.
  const r = shared() < 0.5 ? own : shared;
  let o: Outcome;
  let label: string;
  if (target === 'allreduce') {
    const [l, hs, ts] = tensorsArg(r);
    const op = pick(r, ['sum', 'max', 'min', 'sum', 'avg', 42] as const);
    label = `distAllreduce(${l}, ${op})`;
    writeSync(log, `#${i} ${label}\n`);
    o = call(label, () => native.distAllreduce(hs as Handle[], op as 'sum'));
    if (o.ok) checkValues(label, ts, op === 'sum' ? 3 : op === 'max' ? 2 : 1);
  } else if (target === 'broadcast') {
    const [l, hs, ts] = tensorsArg(r);
    const root = pick(r, [0, 1, 0, 1, 2, -1, 'x'] as const);
    label = `distBroadcast(${l}, ${root})`;
    writeSync(log, `#${i} ${label}\n`);
    o = call(label, () => native.distBroadcast(hs as Handle[], root as number));
    if (o.ok) checkValues(label, ts, (root as number) + 1);
  } else if (target === 'reducer') {
    const n = 1 + Math.floor(r() * 4);
    const shapes = Array.from({ length: n }, () => pick(r, [[3], [2, 2], [5], [4, 4]]));
    const params = shapes.map((s) => keep(full(s, me)).requiresGrad_(r() > 0.05));
    const bucketBytes = pick(r, [1, 16, 64, 1e6, 0, NaN] as const);
    label = `distReducerCreate([${shapes.map((s) => `[${s}]`).join(', ')}], ${bucketBytes})`;
    writeSync(log, `#${i} ${label}\n`);
    let id = -1;
    o = call(label, () => (id = native.distReducerCreate(params.map((p) => p.h), bucketBytes)));
    // Creation agreed on every rank, so what follows runs on every rank too.
    if (o.ok) {
      const backward = shared() < 0.8;
      writeSync(log, `#${i} reducer ${id}: prepare, ${backward ? 'backward, ' : ''}finish\n`);
      const cycle = call('reducer cycle', () => {
        native.distReducerPrepare(id);
        if (backward) {
          let loss = keep(params[0]!.mul(params[0]!).sum());
          for (const p of params.slice(1)) loss = keep(loss.add(keep(p.mul(p).sum())));
          loss.backward();
        }
        native.distReducerFinish(id);
        native.distReducerDestroy(id);
      });
      if (!cycle.ok) wrong.push(`${label}: the reducer cycle failed: ${cycle.msg}`);
      // d(sum p^2)/dp = 2p = 2(rank + 1); averaged over ranks 1 and 2: 3.
      else if (backward) checkValues(label, params.map((p) => p.grad), 3);
      for (const p of params) p.grad?.dispose();
    }
  } else if (target === 'syncbn') {
    const C = pick(r, [2, 3, 2, 3, 4]);
    const affine = r() < 0.7;
    const x = keep(randn([pick(r, [2, 3, 0]), C, 3, 3], { requiresGrad: true }));
    const w = affine ? keep(ones([pick(r, [C, C, C, C + 1])])).requiresGrad_() : null;
    const b = affine ? keep(full([C], 0)).requiresGrad_() : null;
    const eps = pick(r, [1e-5, 1e-5, 0, -1]);
    label = `distSyncBatchNorm(x[*,${C},3,3] ${x.shape[0]}, ${affine ? `w[${w!.shape}]` : 'no affine'}, eps ${eps})`;
    writeSync(log, `#${i} ${label}\n`);
    let y: Handle | null = null;
    o = call(label, () => (y = native.distSyncBatchNorm(x.h, w?.h, b?.h, null, null, eps, 0.1)));
    if (o.ok) {
      const back = call('syncbn backward', () => keep(keep(new Tensor(y!)).sum()).backward());
      if (!back.ok) wrong.push(`${label}: backward failed: ${back.msg}`);
    }
  } else if (target === 'barrier') {
    label = 'distBarrier()';
    writeSync(log, `#${i} ${label}\n`);
    o = call(label, () => native.distBarrier());
  } else {
    label = 'distRank(), distWorldSize()';
    writeSync(log, `#${i} ${label}\n`);
    o = call(label, () => {
      if (native.distRank() !== e.rank || native.distWorldSize() !== e.worldSize) throw new Error('wrong rank or world size');
    });
    if (!o.ok) wrong.push(o.msg);
  }
  if (o.ok) ok++;
  else errors++;
  // What both ranks must agree on: success, or failure (the messages name each rank's own arguments).
  outcomes.push(`${i}:${target}:${o.ok ? 'ok' : 'error'}`);
  if (i % 50 === 49) {
    for (const t of made) if (!t.isDisposed) t.dispose();
    made.length = 0;
  }
}
closeSync(log);
dist.destroy();
console.log('FUZZD-RESULT ' + JSON.stringify({ rank: e.rank, calls: N, ok, errors, timeouts, wrong: wrong.slice(0, 20), outcomes }));
process.exit(0);
