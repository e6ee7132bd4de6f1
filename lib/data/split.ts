// A held-out split of a labelled list, as fine-tuning on one folder of class folders needs: each class keeps
// its share (stratified), and the draw is a pure function of the seed and the list's order.
import { Rng, permutation } from './rng.ts';

/**
 * Splits positions 0..labels.length-1 into train and val: in each class, round(fraction · count) images drawn by a
 * seeded shuffle of that class's positions go to val (at least one, and never all, when the class has two or more;
 * a class of one stays in train). Both lists come back in ascending order.
 */
export function stratifiedSplit(labels: readonly number[], fraction: number, seed: number): { train: number[]; val: number[] } {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`stratifiedSplit: fraction must be in (0, 1); got ${fraction}`);
  const byClass = new Map<number, number[]>();
  labels.forEach((l, i) => {
    const list = byClass.get(l);
    if (list) list.push(i);
    else byClass.set(l, [i]);
  });
  const val: number[] = [];
  for (const [label, idx] of byClass) {
    if (idx.length < 2) continue;
    const n = Math.min(idx.length - 1, Math.max(1, Math.round(fraction * idx.length)));
    const order = permutation(idx.length, new Rng(seed, label, 0x5e1ec7));
    for (let j = 0; j < n; j++) val.push(idx[order[j]!]!);
  }
  const held = new Set(val);
  return { train: labels.map((_, i) => i).filter((i) => !held.has(i)), val: val.sort((a, b) => a - b) };
}
