// Shared test helpers: the PyTorch reference (the .venv's torch, the same build the addon links) and
// torchvision oracle (Debian's /usr/bin/python3, torch 1.13), each run as a separate process.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Python of the torch build the addon links (for op-level references). */
export const torchPython = process.env.TORCH_PYTHON ?? join(root, '.venv', 'bin', 'python');
/** Debian's Python with torchvision (the model oracle). */
export const visionPython = process.env.PYTHON ?? '/usr/bin/python3';

/** Runs a Python snippet and parses the JSON it prints last. */
export function py<T = unknown>(code: string, { python = torchPython, timeout = 300_000 } = {}): T {
  const out = execFileSync(python, ['-c', code], { encoding: 'utf8', timeout, maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

export const hasTorchPython = existsSync(torchPython);

/** A seeded generator of uniform numbers in [-1, 1) (a 32-bit LCG), for inputs both sides can rebuild. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

/** A fresh temporary directory. */
export function tmp(prefix = 'resnet-ts-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Largest absolute difference between two numeric arrays (lengths must match). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
}

/** max |a-b| / max(|b|, floor): a relative error that tolerates values near zero. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])) / Math.max(Math.abs(Number(b[i])), floor));
  return m;
}

/** A run's summary.json without what legitimately differs between runs (time, output folder, the resume flag). */
export function comparableSummary(dir: string): Record<string, unknown> {
  const s = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  delete s.wallTime;
  delete s.flags.out;
  delete s.flags.resume;
  delete s.flags.quiet; // output only: a resume may be run without --quiet
  return s;
}
