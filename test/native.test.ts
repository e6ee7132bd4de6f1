// The op table (lib/native.ts) against the addon: every native function is a row and every row a
// native function, and each row names the arguments in the order the C++ reads them. Reference:
// the addon's own argument errors ("fn: argument 'name' must be ..."), which name what the C++
// reads. Each argument starts as a value no reader accepts; the error names the argument read;
// the table's position for that name gets a valid value; a second identical complaint means the
// C++ reads that name at another position. At the end every position must have been read.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DTYPE_NAMES, OPS, native, type Handle } from '../lib/native.ts';

// Need a process group before they read anything; their order is checked by distributed.test.ts
// (SyncBatchNorm against BatchNorm2d, DDP against per-rank gradients).
const NEEDS_GROUP = /^dist(?!IsInitialized)/;
// Takes any value by design (it answers whether the value is a handle).
const ANY_VALUE = new Set(['isHandle']);
// Without CUDA these are stubs that read nothing; a CUDA build without a device refuses graphs before
// reading all their arguments (test/cuda.test.ts checks those refusals, test:gpu the graphs).
const STUB = !native.cudaBuilt() ? /^cuda/ : native.cudaIsAvailable() ? /^$/ : /^cuda(Graph|Warmup)/;
// Check the packed weight or plan (which only convPack / dnnlConvPlan make) before reading the rest: their later
// positions are checked by test/inference-optimize.test.ts and test/inference-planned.test.ts with real arguments.
const VALIDATES_EARLY = ['convFused', 'convFusedAdd', 'dnnlConvPlan', 'dnnlConvRun'];
const INCONCLUSIVE = 'stopped by its own check of a value before reading every argument';

const POISON = Symbol('no reader accepts this');
const made: Handle[] = [];
const dummy = (): Handle => {
  const h = native.zeros([1, 1, 1, 1]);
  made.push(h);
  return h;
};

/** A value that satisfies the reader's stated expectation, or undefined for an op's own check. */
function valueFor(want: string): unknown {
  const choice = /^'([^']+)'(, '[^']+')* or '[^']+'$/.exec(want);
  if (choice) return choice[1];
  switch (want) {
    case 'a Tensor': return dummy();
    case 'an array of Tensors': return [dummy()];
    case 'a number': case 'an integer': case 'an integer in 1..1024': return 1;
    case 'a boolean': return false;
    case 'an array of integers': return [1];
    case 'a dtype code': case 'a supported dtype code': case 'float16, bfloat16 or float32': return native.dtypes.float32;
    case 'a string': return 'cpu';
    case 'a TypedArray, Buffer or ArrayBuffer': return new Uint8Array(4);
    default: return undefined;
  }
}

/** The problems with one row: names the C++ reads elsewhere, or not at all. */
function check(name: string, args: readonly string[]): string[] {
  const names = args.map((a) => a.split(':')[0]!);
  const values: unknown[] = names.map(() => POISON);
  const asked = new Map<string, string>();
  const f = native[name as keyof typeof OPS] as (...a: unknown[]) => unknown;
  let threw = false;
  for (let round = 0; round <= 3 * names.length; round++) {
    let m: RegExpExecArray | null = null;
    try {
      f(...values);
      threw = false;
    } catch (e) {
      threw = true;
      m = e instanceof TypeError ? new RegExp(`^${name}: argument '(\\w+)' must be (.*)$`).exec(e.message) : null;
    }
    if (!m) break; // every argument read was accepted
    const [, arg, want] = m as unknown as [string, string, string];
    const at = names.indexOf(arg);
    if (at < 0) return [`the C++ reads '${arg}', which the row does not name`];
    if (asked.get(arg) === want) return [`the C++ reads '${arg}' at another position than ${at}`];
    asked.set(arg, want);
    const v = valueFor(want);
    if (v === undefined) return []; // the op's own check of a value: everything before it was read
    values[at] = v;
  }
  const unread = names.filter((_, i) => values[i] === POISON);
  if (unread.length && threw) return [INCONCLUSIVE];
  return unread.map((n) => `the C++ never reads '${n}'`);
}

test('every native function is a row of the op table, and every row is in the addon', () => {
  const fns = Object.keys(native).filter((k) => typeof (native as unknown as Record<string, unknown>)[k] === 'function');
  assert.equal(fns.filter((k) => !(k in OPS)), [], 'native functions missing from OPS');
  assert.equal(Object.keys(OPS).filter((k) => !fns.includes(k)), [], 'rows of OPS the addon lacks');
});

test('DTYPE_NAMES are the addon\'s dtype names', () => {
  assert.equal(Object.keys(native.dtypes).sort(), [...DTYPE_NAMES].sort());
});

test('each row names the arguments in the order the C++ reads them', () => {
  const grad = native.isGradEnabled();
  const threads = native.getNumThreads();
  const rng = native.rngState();
  const problems: string[] = [];
  const early: string[] = [];
  let checked = 0;
  try {
    for (const [name, op] of Object.entries(OPS)) {
      if (!op.args.length || NEEDS_GROUP.test(name) || ANY_VALUE.has(name) || STUB.test(name)) continue;
      const found = check(name, op.args);
      if (found[0] === INCONCLUSIVE) early.push(name);
      else problems.push(...found.map((p) => `${name}: ${p}`));
      checked++;
    }
  } finally {
    native.setGradEnabled(grad);
    native.setNumThreads(threads);
    native.setRngState(rng);
    native.dispose(rng);
    for (const h of made.splice(0)) native.dispose(h);
  }
  assert.equal(problems, []);
  assert.equal(early, VALIDATES_EARLY, 'rows whose later arguments went unchecked');
  assert.ok(checked > 120, `only ${checked} rows checked`);
});

test('a row whose names are swapped is caught (the check can fail)', () => {
  assert.equal(check('narrow', ['self', 'dim', 'length', 'start']).length > 0, true);
  assert.equal(check('batchNorm', ['input', 'runningMean', 'runningVar', 'weight', 'bias', 'training', 'momentum', 'eps']).length > 0, true);
  assert.equal(check('transpose', ['self', 'dim0']), ["the C++ reads 'dim1', which the row does not name"]);
  assert.equal(check('squeeze', ['self', 'dim', 'extra']), ["the C++ never reads 'extra'"]);
  for (const h of made.splice(0)) native.dispose(h);
});

test('an in-place op hands back the handle it was given, not a second one', () => {
  const x = native.zeros([2]);
  const before = native.memory().tensors;
  assert.is(native.add_(x, 1), x);
  assert.is(native.mul_(x, x), x);
  assert.is(native.fill_(x, 3), x);
  assert.is(native.relu_(x), x);
  assert.is(native.requiresGrad_(x, false), x);
  assert.is(native.memory().tensors, before);
  native.dispose(x);
});

test.run();
