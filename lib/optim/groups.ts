// Parameter groups that spare BN weights and biases from weight decay (common practice since
// Goyal et al. 2017): those are the one-dimensional parameters.
import type { Tensor } from '../tensor.ts';
import type { ParamGroup } from './optimizer.ts';

/** Two groups: multi-dimensional weights with weightDecay, 1-D parameters (BN, biases) without. */
export function noDecayOnNormAndBias<O extends { weightDecay: number }>(named: Iterable<[string, Tensor]>, weightDecay: number): ParamGroup<O>[] {
  const decay: Tensor[] = [];
  const none: Tensor[] = [];
  for (const [, p] of named) (p.ndim <= 1 ? none : decay).push(p);
  return [
    { params: decay, options: { weightDecay } as Partial<O> },
    { params: none, options: { weightDecay: 0 } as Partial<O> },
  ];
}
