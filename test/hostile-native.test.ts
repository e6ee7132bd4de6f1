// The native layer under hostile calls (issue 15, items 5, 6, 8 and 14): each must be a JS Error,
// never an abort, a read of freed memory, or another tensor's data. References: V8's typed-array
// length limit (2^32 elements on Node 20), the bytes each test put in its own tensors, and the
// handle ids the addon itself returned.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { full, randn } from '../lib/index.ts';
import { native, type Handle } from '../lib/native.ts';
import { root } from './helpers.ts';

test('toArray, toList, toString, inspect and toBytes of a tensor of more than 2^32 elements are Errors, not aborts (item 5)', () => {
  // A stride-0 view: 2^32 + 1 elements of one byte. In a child process: before the fix this aborted.
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', `
    import { inspect } from 'node:util';
    import { zeros } from ${JSON.stringify(join(root, 'lib', 'index.ts'))};
    const big = zeros([1], { dtype: 'uint8' }).expand([2 ** 32 + 1]);
    for (const [name, f] of [['toArray', () => big.toArray()], ['toList', () => big.toList()], ['toString', () => big.toString()],
                             ['inspect', () => inspect(big)], ['toBytes', () => big.toBytes()]]) {
      try { f(); console.log(name, 'RETURNED'); } catch (e) { console.log(name, 'ERROR', e.message); }
    }
  `], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.is(r.signal, null, `child killed by ${r.signal}: ${r.stderr.slice(-600)}`);
  const lines = r.stdout.trim().split('\n');
  assert.is(lines.length, 5, r.stdout + r.stderr.slice(-600));
  for (const l of lines) assert.match(l, /ERROR (toArray|toBytes): the tensor has 4294967297 (elements|bytes), more than a JS typed array can hold/, l);
});

test('fromBytes reads its shape before its data: a shape getter that detaches the buffer gets an Error, not freed memory (item 6)', () => {
  const ab = new ArrayBuffer(1 << 16);
  new Uint8Array(ab).fill(7);
  const data = new Uint8Array(ab);
  const shape = [1 << 16];
  let detached = false;
  Object.defineProperty(shape, 0, {
    get() {
      structuredClone(ab, { transfer: [ab] });
      detached = true;
      return 1 << 16;
    },
  });
  assert.throws(() => native.fromBytes(data, shape, native.dtypes.uint8!), /fromBytes: data holds 0 bytes but shape \[65536\] of Byte needs 65536/);
  assert.ok(detached, 'the getter ran');
});

test('forged handle ids never alias a live tensor: every id is refused unless the addon returned it (item 8)', () => {
  const ts = Array.from({ length: 64 }, (_, i) => full([1], i));
  const hs = ts.map((t) => t.h as unknown as bigint);
  const live = new Set(hs);
  const refused = (id: bigint): boolean => {
    try {
      native.toArray(id as unknown as Handle);
      return false;
    } catch (e) {
      return e instanceof Error;
    }
  };
  const forged: bigint[] = [];
  // Ids in the shape handles had before (tag 0xA7E, generation, slot), and small integers.
  for (let slot = 0n; slot < 256n; slot++) for (let gen = 0n; gen < 4n; gen++) forged.push((0xa7en << 52n) | (gen << 28n) | slot);
  for (let v = 0n; v < 256n; v++) forged.push(v);
  // A live handle's other words with another live handle's slot; every single-bit flip of a live handle.
  const slotMask = (1n << 28n) - 1n;
  for (const a of hs) for (const b of hs) forged.push((a & ~slotMask) | (b & slotMask));
  for (const a of hs) for (let bit = 0n; bit < 130n; bit++) forged.push(a ^ (1n << bit));
  let n = 0;
  for (const id of forged) {
    if (live.has(id)) continue;
    n++;
    assert.ok(refused(id), `forged id 0x${id.toString(16)} was accepted`);
  }
  assert.ok(n > 10_000, `${n} forged ids`);
  ts.forEach((t, i) => assert.equal(Array.from(t.toArray() as Float32Array), [i]));
  for (const t of ts) t.dispose();
});

test('printing a random 400x400 tensor summarizes it instead of throwing RangeError (item 14)', () => {
  const t = randn([400, 400]);
  const s = t.toString();
  t.dispose();
  assert.ok(s.startsWith('tensor([['), s.slice(0, 40));
  // Summarized as torch does: three rows, '...', three rows, each with three values, '...', three values.
  const rows = s.split('\n').filter((l) => l.includes('['));
  assert.is(rows.length, 6, s);
  for (const r of rows) assert.is(r.split('...').length, 2, r);
});

test.run();
