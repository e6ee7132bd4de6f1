// Argument parsers shared by the scripts' commander definitions: a bad value becomes commander's
// "error: option '--x <n>' argument 'y' is invalid. expected ..." and exit code 2 (see each script).
import { InvalidArgumentError } from 'commander';

/** An integer >= min. */
export const int = (min: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
  return n;
};

/** A finite number >= min. */
export const float = (min: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min) throw new InvalidArgumentError(`expected a number >= ${min}`);
  return n;
};

/** A comma-separated list of integers >= 0. */
export const ints = (v: string): number[] => v.split(',').map((s) => int(0)(s.trim()));

/** Positive integer (>= 1). */
export const positiveInt = int(1);
