// Numbers agreed over the data-parallel ranks: one small allreduce, or the numbers themselves alone.
import { tensor } from '../creation.ts';
import { allreduce, worldSize } from '../distributed/index.ts';
import { tidy } from '../tensor.ts';

/** Sums (or maxima) of numbers over all ranks (the numbers themselves when not distributed). */
export function overRanks(values: number[], op: 'sum' | 'max' = 'sum'): number[] {
  if (worldSize() === 1) return values;
  return tidy(() => {
    const t = tensor(values, { dtype: 'float64' });
    allreduce([t], op);
    return Array.from(t.toArray() as Float64Array);
  });
}
