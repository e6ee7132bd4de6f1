// How training runs choose OpenMP's wait policy (scripts/omp-policy.ts): the CPU other processes use, read from
// /proc/stat, and the run's own shape (data-parallel, image folders); a policy set by the user is kept.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { busyCores, chooseWaitPolicy } from '../scripts/omp-policy.ts';
import { root } from './helpers.ts';

test('busyCores: the share of non-idle time between two /proc/stat snapshots, in cores (steal counts as busy)', () => {
  const before = 'cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 50 0 25 500 5 0 0 0 0 0\n';
  assert.is(busyCores(before, 'cpu  200 0 100 1150 10 0 0 0 0 0\n', 2), 1);
  assert.is(busyCores(before, 'cpu  100 0 50 1300 10 0 0 100 0 0\n', 4), 1, 'a quarter stolen by the hypervisor');
  assert.is(busyCores(before, 'cpu  100 0 50 1400 10 0 0 0 0 0\n', 2), 0);
  assert.is(busyCores('', before, 2), null);
  assert.is(busyCores(before, before, 2), null, 'no time passed');
});

test('chooseWaitPolicy: spin on an idle machine; passive when others are busy, data-parallel, experiment --jobs, an image folder, or unknown', () => {
  const c = (args: string[], busy: number | null, env: NodeJS.ProcessEnv = {}) => chooseWaitPolicy({ args, env, busy, cores: 2 }).policy;
  assert.is(c(['--epochs', '1'], 0.1), null);
  assert.is(c(['--data', 'cifar10'], 0.2), null);
  assert.is(c(['--epochs', '1'], 0.8), 'PASSIVE');
  assert.is(c([], null), 'PASSIVE');
  assert.is(c(['--nproc-per-node', '2'], 0), 'PASSIVE');
  assert.is(c(['--nproc-per-node=2'], 0), 'PASSIVE');
  assert.is(c([], 0, { WORLD_SIZE: '4' }), 'PASSIVE');
  assert.is(c(['--data', '/data/imagenette'], 0), 'PASSIVE');
  assert.is(c(['degradation', '--jobs', '2'], 0), 'PASSIVE', 'experiment --jobs 2');
  assert.is(c(['degradation', '--jobs', '1'], 0), null);
  assert.is(c(['degradation', '--job', 'plain20@0'], 0), 'PASSIVE', 'a --jobs child');
  assert.match(chooseWaitPolicy({ args: [], env: {}, busy: 0.04, cores: 2 }).reason, /spin-waits: other processes used 0\.0 of 2 cores/);
});

// applyWaitPolicy in a fresh process, as train.ts calls it before libtorch loads: what it sets and says.
const probe = (env: NodeJS.ProcessEnv, args = ['--epochs', '1']): { policy: string | null; note: string } => {
  const code = `import { applyWaitPolicy } from ${JSON.stringify(join(root, 'scripts/omp-policy.ts'))};
const note = await applyWaitPolicy(${JSON.stringify(args)}, 400);
console.log(JSON.stringify({ policy: process.env.OMP_WAIT_POLICY ?? null, note }));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: root, encoding: 'utf8', env, timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
};

test('applyWaitPolicy: with two busy-looping processes beside it, the run waits passively; a policy given is kept', async () => {
  const env = { ...process.env };
  delete env.OMP_WAIT_POLICY;
  const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  try {
    await new Promise((r) => setTimeout(r, 300));
    const busy = probe(env);
    assert.is(busy.policy, 'PASSIVE', busy.note);
    assert.match(busy.note, /waits passively: other processes used [\d.]+ of \d+ cores/);
  } finally {
    for (const h of hogs) h.kill('SIGKILL');
  }
  assert.equal(probe({ ...env, OMP_WAIT_POLICY: 'ACTIVE' }), { policy: 'ACTIVE', note: 'OMP_WAIT_POLICY=ACTIVE as set' });
  assert.equal(probe(env, ['--nproc-per-node', '2']), { policy: 'PASSIVE', note: 'OpenMP waits passively: data-parallel processes share the cores' });
});

test.run();
