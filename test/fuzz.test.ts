// Fuzz (issue 7): at least 20,000 seeded calls of every function exported by lib/index.ts, every
// Tensor method and getter, every method of the exported classes' instances and every raw native
// function, with wrong types, shapes, dtypes, devices, negative and huge sizes, disposed tensors
// and garbage objects (test/fuzz.child.ts). Each call must return or throw a JS Error. The calls run
// in a child process, so an abort or crash fails this test with the call that caused it instead of
// killing the runner. Reference: the process's own survival (exit code and signal).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, tmp } from './helpers.ts';
import { native } from '../lib/native.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20240611);
const MIN_CALLS = 50_000;

interface Result {
  calls: number; threw: number; returned: number; seconds: number; targets: number; nativeTargets: number;
  minCallsPerTarget: number; nonErrorThrows: string[]; uncaught: string[]; retired: string[]; excluded: string[];
}

test(`fuzz: ≥ ${MIN_CALLS} calls of every exported and native function never crash the process (seed ${SEED})`, () => {
  const dir = tmp('resnet-ts-fuzz-');
  const logFile = join(dir, 'calls.log');
  // cwd is an empty temporary folder, so functions that write files given relative garbage paths write there.
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'test', 'fuzz.child.ts'), String(SEED), '60000', String(MIN_CALLS), logFile], {
    cwd: dir, encoding: 'utf8', timeout: 180_000, maxBuffer: 1 << 28, env: { ...process.env, FORCE_COLOR: '0' },
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('FUZZ-RESULT '));
  if (r.status !== 0 || r.signal || !line) {
    const calls = readFileSync(logFile, 'utf8').trimEnd().split('\n');
    assert.unreachable(`fuzz child died (status ${r.status}, signal ${r.signal}${r.error ? `, ${r.error.message}` : ''}) at:\n  ${calls.slice(-3).join('\n  ')}\n${r.stderr.slice(-3000)}`);
  }
  const res = JSON.parse(line!.slice('FUZZ-RESULT '.length)) as Result;
  console.log(`  fuzz: ${res.calls} calls of ${res.targets} targets (${res.nativeTargets} native) in ${res.seconds.toFixed(1)} s; ${res.threw} threw, ${res.returned} returned; retired: ${res.retired.length ? res.retired.join('; ') : 'none'}`);
  assert.ok(res.calls >= MIN_CALLS, `only ${res.calls} calls`);
  assert.equal(res.uncaught, [], 'uncaught exceptions or unhandled rejections would end a real process');
  assert.equal(res.nonErrorThrows, [], 'everything thrown must be an Error');
  assert.ok(res.minCallsPerTarget >= 20 || res.retired.length > 0, `a target got only ${res.minCallsPerTarget} calls`);
  const nativeFns = Object.values(native).filter((f) => typeof f === 'function').length;
  assert.is(res.nativeTargets, nativeFns - 1, 'every native function but distInit is fuzzed');
  assert.ok(res.targets > 300, `only ${res.targets} targets enumerated`);
});

test.run();
