// How a training run's OpenMP threads wait between ops, chosen before libtorch (and its libgomp, which reads
// OMP_WAIT_POLICY once, when it loads) is imported. libgomp's default, which PyTorch runs with, spins for a while
// before sleeping: on a machine the run has to itself that is fastest (resnet20 on Fashion-MNIST, batch 128,
// 2 threads, Zen 5 EPYC, 2026-12-06: 1156-1245 images/s against 1004 with PASSIVE). Where other work
// shares the cores a spinning thread takes the core the working one needs and small ops take milliseconds
// (resnet50 b1 at load 11 on 2 cores: 2.8 x onnxruntime's time spinning, 0.94 x passive), so there it waits
// passively: when other processes are busy, when the run is one of several data-parallel processes or of an
// experiment's --jobs, or when its images are decoded on other threads meanwhile (an image folder).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** The datasets fit() holds in memory (nothing decodes while a step runs). */
const IN_MEMORY = new Set(['fashion-mnist', 'mnist', 'cifar10', 'cifar100']);

/** Cores' worth of CPU time spent between two /proc/stat snapshots (its first line), steal included; null if unparsable. */
export function busyCores(before: string, after: string, cores: number): number | null {
  const parse = (s: string): number[] | null => {
    const m = /^cpu\s+([\d\s]+)$/m.exec(s);
    const v = m ? m[1]!.trim().split(/\s+/).map(Number) : [];
    return v.length >= 4 && v.every(Number.isFinite) ? v : null;
  };
  const a = parse(before);
  const b = parse(after);
  if (!a || !b) return null;
  // user nice system idle iowait irq softirq steal (guest time is already counted in user).
  const sum = (v: number[]): number => v.slice(0, 8).reduce((x, y) => x + y, 0);
  const idle = (v: number[]): number => v[3]! + (v[4] ?? 0);
  const total = sum(b) - sum(a);
  if (!(total > 0)) return null;
  return (cores * (total - (idle(b) - idle(a)))) / total;
}

export interface WaitChoice {
  /** 'PASSIVE', or null for libgomp's default (spin, then sleep). */
  policy: 'PASSIVE' | null;
  /** Why, for the run's first line. */
  reason: string;
}

/**
 * The choice for a run with these arguments: PASSIVE for data-parallel runs, experiments' --jobs and image folders, and when the
 * other processes kept `busy` cores (or more) of `cores` busy while this one waited; else libgomp's default.
 */
export function chooseWaitPolicy(o: { args: string[]; env: NodeJS.ProcessEnv; busy: number | null; cores: number }): WaitChoice {
  const value = (flag: string): string | undefined => {
    const i = o.args.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
    if (i < 0) return undefined;
    const a = o.args[i]!;
    return a.includes('=') ? a.slice(a.indexOf('=') + 1) : o.args[i + 1];
  };
  if (Number(o.env.WORLD_SIZE ?? 1) > 1 || Number(value('--nproc-per-node') ?? 1) > 1) {
    return { policy: 'PASSIVE', reason: 'OpenMP waits passively: data-parallel processes share the cores' };
  }
  // `experiment --jobs N`: N runs train at once, each in a process of its own (started with --job).
  if (Number(value('--jobs') ?? 1) > 1 || value('--job') !== undefined) {
    return { policy: 'PASSIVE', reason: 'OpenMP waits passively: several runs share the cores' };
  }
  const data = value('--data') ?? 'fashion-mnist';
  if (!IN_MEMORY.has(data)) return { policy: 'PASSIVE', reason: 'OpenMP waits passively: images are decoded meanwhile' };
  if (o.busy === null) return { policy: 'PASSIVE', reason: 'OpenMP waits passively: CPU use unknown' };
  const other = `other processes used ${o.busy.toFixed(1)} of ${o.cores} cores`;
  return o.busy >= 0.5
    ? { policy: 'PASSIVE', reason: `OpenMP waits passively: ${other}` }
    : { policy: null, reason: `OpenMP spin-waits: ${other}` };
}

/**
 * Sets OMP_WAIT_POLICY for this run unless it is set already (then it is kept as given): samples /proc/stat over
 * `ms` ms, in which this process sleeps, and applies chooseWaitPolicy. Returns the reason, or the policy given.
 */
export async function applyWaitPolicy(args = process.argv.slice(2), ms = 250): Promise<string> {
  if (process.env.OMP_WAIT_POLICY !== undefined) return `OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY} as set`;
  const stat = (): string => {
    try {
      return readFileSync('/proc/stat', 'utf8');
    } catch {
      return '';
    }
  };
  const cores = availableParallelism();
  let busy: number | null = null;
  // No sampling where the arguments decide (PASSIVE even on an idle machine) or nothing will train (--help).
  const decided = chooseWaitPolicy({ args, env: process.env, busy: 0, cores }).policy !== null;
  if (!decided && !args.some((a) => a === '--help' || a === '-h')) {
    const before = stat();
    await new Promise((r) => setTimeout(r, ms));
    busy = busyCores(before, stat(), cores);
  }
  const c = chooseWaitPolicy({ args, env: process.env, busy, cores });
  if (c.policy) process.env.OMP_WAIT_POLICY = c.policy;
  return c.reason;
}
