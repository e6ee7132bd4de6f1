// Memory: tidy, keep, dispose and `using` free exactly what they should (counted by memory(),
// the addon's own live-handle count); RSS stays flat over many ops; the GC finalizer frees
// forgotten tensors (checked in a child process with --expose-gc).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ones, zeros, tidy, keep, dispose, memory, Tensor } from '../lib/index.ts';
import { root } from './helpers.ts';

function child(scenario: string): Record<string, number> {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(root, 'test', 'memory.child.ts'), scenario], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

test('100,000 small ops inside tidy leave memory().tensors at its baseline', () => {
  const x = zeros([1]);
  const before = memory().tensors;
  tidy(() => {
    for (let i = 0; i < 100_000; i++) x.add(1).mul(2);
  });
  assert.is(memory().tensors, before);
  const kept = tidy(() => x.add(3));
  assert.ok(kept instanceof Tensor);
  assert.is(memory().tensors, before + 1);
  kept.dispose();
  x.dispose();
});

test('tidy keeps returned tensors (nested in arrays and objects) and keep()s, and frees on a throw', () => {
  const before = memory().tensors;
  const out = tidy(() => {
    const a = ones([2]);
    keep(ones([3]));
    a.add(1);
    return { pair: [a.mul(2), a.mul(3)], n: 1 };
  });
  assert.is(memory().tensors, before + 3);
  dispose(out);
  assert.is(memory().tensors, before + 1);
  assert.throws(() => tidy(() => { ones([4]); throw new Error('inside'); }), /inside/);
  assert.is(memory().tensors, before + 1);
  const inner = tidy(() => tidy(() => ones([5])).add(1));
  assert.is(memory().tensors, before + 2);
  inner.dispose();
});

test('memory() counts a shared storage once and reports its bytes', () => {
  const before = memory();
  const a = zeros([1000]);
  const v = a.view(10, 100);
  const now = memory();
  assert.is(now.tensors - before.tensors, 2);
  assert.is(now.storages - before.storages, 1);
  assert.is(now.bytes - before.bytes, 4000);
  a.dispose();
  assert.is(memory().bytes - before.bytes, 4000, 'the view still holds the storage');
  v.dispose();
  assert.equal(memory(), before);
});

test('`using` disposes at the end of the block (Symbol.dispose)', () => {
  const before = memory().tensors;
  let escaped: Tensor;
  {
    using t = ones([3]);
    escaped = t;
    assert.is(memory().tensors, before + 1);
  }
  assert.is(memory().tensors, before);
  assert.ok(escaped.isDisposed);
});

test('the GC finalizer frees forgotten tensors (child process, --expose-gc)', () => {
  const r = child('finalizer');
  assert.is(r.leaked, 2000);
  assert.is(r.after, 0);
  assert.is(r.bytesAfter, 0);
});

test('RSS stays flat over 600,000 small ops (10 rounds of tidy) after warm-up (child process)', () => {
  const r = child('rss');
  assert.ok(r.growth! < 16 * 2 ** 20, `RSS grew by ${(r.growth! / 2 ** 20).toFixed(1)} MiB`);
});

test.run();
