// `--nproc-per-node N`: runs the training script N times with torchrun's variables and waits for the
// ranks. Node modules only: the launcher never loads libtorch.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { childCause, childExitCode, signalExitCode, stoppedCleanly, type ChildExit } from './cli.ts';

/** A free TCP port on the loopback interface, for the rendezvous of local ranks. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Runs o.script with o.args (this script's arguments) and o.extra as ranks 0..n-1 with RANK, LOCAL_RANK, WORLD_SIZE,
 * MASTER_ADDR and MASTER_PORT set. The ranks run in their own process groups, so each SIGINT or SIGTERM
 * sent to the launcher reaches each rank exactly once, forwarded from here. When a rank fails, the others
 * are killed (a process group with a dead member cannot save), each rank's exit is reported, and the exit
 * code is the failed rank's; otherwise it is 0, or 130/143 when the ranks were stopped by a signal.
 */
export async function launch(n: number, o: { script: string; args: string[]; extra: string[]; port?: number; backend: string; quiet: boolean }): Promise<number> {
  const masterPort = o.port ?? (await freePort());
  if (!o.quiet) console.log(`launching ${n} ranks (MASTER_ADDR=127.0.0.1 MASTER_PORT=${masterPort}, backend ${o.backend})`);
  const children: ChildProcess[] = [];
  const exits: (ChildExit | undefined)[] = new Array(n).fill(undefined);
  let failed: number | undefined;
  let forwarded: NodeJS.Signals | undefined;
  await new Promise<void>((resolve) => {
    let left = n;
    for (let r = 0; r < n; r++) {
      const env = { ...process.env, RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: String(n), LOCAL_WORLD_SIZE: String(n), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(masterPort) };
      const child = spawn(process.execPath, [...process.execArgv, o.script, ...o.args, ...o.extra], { env, stdio: 'inherit', detached: true });
      children.push(child);
      child.on('exit', (code, signal) => {
        exits[r] = { code, signal };
        if (failed === undefined && !stoppedCleanly(childExitCode(exits[r]!))) {
          failed = r;
          for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        }
        if (--left === 0) resolve();
      });
    }
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, () => {
        forwarded ??= sig;
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(sig);
      });
    }
  });
  const done = exits as ChildExit[];
  if (failed !== undefined) {
    done.forEach((e, r) => {
      if (!stoppedCleanly(childExitCode(e))) process.stderr.write(`train: rank ${r} ${childCause(e)}${r !== failed && e.signal === 'SIGKILL' ? ` (stopped by the launcher after rank ${failed} failed)` : ''}\n`);
    });
    return childExitCode(done[failed]!);
  }
  const codes = done.map(childExitCode);
  // A rank can stop because another asked (the ranks agree at each step) before its own copy of the signal was
  // handled; it then reports 130 whatever the signal was. The run's code is that of the signal this launcher got.
  if (forwarded && codes.some((c) => c !== 0)) return signalExitCode(forwarded);
  return codes.find((c) => c !== 0) ?? 0;
}
