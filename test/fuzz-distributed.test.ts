// Fuzz of the collectives over 2 Gloo ranks (issue 15, item 7): seeded calls of distAllreduce,
// distBroadcast, distBarrier, the DDP reducer and SyncBatchNorm where the ranks often pass different
// sizes, dtypes, stride-0, transposed or sliced views, disposed handles and garbage
// (test/fuzz-distributed.child.ts). Before the checks, such calls aborted a rank (gloo::EnforceNotMet,
// gloo::IoException) or overflowed a heap buffer. Each call must return or throw on both ranks alike,
// within the timeout, and successful calls must compute the right values. References: the ranks'
// survival, each other's outcomes, and arithmetic on the values each rank put in (rank + 1).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, tmp } from './helpers.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20240611);
const CALLS = 1500;

interface Result { rank: number; calls: number; ok: number; errors: number; timeouts: number; wrong: string[]; outcomes: string[] }
interface Done { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; log: string }

test(`fuzz: ${CALLS} seeded calls of the collectives on 2 Gloo ranks that often disagree never crash, hang or compute wrong values (seed ${SEED})`, async () => {
  const dir = tmp('resnet-ts-fuzzd-');
  const port = String(20000 + Math.floor(Math.random() * 20000));
  const done = await Promise.all([0, 1].map((rank) => new Promise<Done>((resolve) => {
    const log = join(dir, `calls-${rank}.log`);
    const p = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'test', 'fuzz-distributed.child.ts'), String(SEED), String(CALLS), log], {
      cwd: dir, env: { ...process.env, RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 150_000);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, log });
    });
  })));
  for (const [rank, d] of done.entries()) {
    if (d.code !== 0 || d.signal) {
      const last = (existsSync(d.log) ? readFileSync(d.log, 'utf8') : '(no log)').trimEnd().split('\n').slice(-2).join('\n  ');
      assert.unreachable(`rank ${rank} died (status ${d.code}, signal ${d.signal}) at:\n  ${last}\n${d.stderr.slice(-2000)}`);
    }
  }
  const res = done.map((d) => JSON.parse(d.stdout.split('\n').find((l) => l.startsWith('FUZZD-RESULT '))!.slice('FUZZD-RESULT '.length)) as Result);
  console.log(`  fuzz-distributed: ${CALLS} calls per rank; ${res[0]!.ok} returned, ${res[0]!.errors} threw`);
  for (const r of res) {
    assert.equal(r.wrong, [], `rank ${r.rank}: wrong values or failed follow-ups`);
    assert.is(r.timeouts, 0, `rank ${r.rank}: ${r.timeouts} calls timed out (the ranks fell out of step)`);
  }
  const differ = res[0]!.outcomes.findIndex((o, i) => o !== res[1]!.outcomes[i]);
  assert.is(differ, -1, `the ranks' outcomes differ first at ${res[0]!.outcomes[differ]} vs ${res[1]!.outcomes[differ]}`);
  assert.ok(res[0]!.ok > CALLS / 10 && res[0]!.errors > CALLS / 10, 'both outcomes occur often (the fuzz reaches the data path and the refusals)');
});

test.run();
