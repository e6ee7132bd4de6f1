// SGD with momentum, dampening, Nesterov and L2 weight decay: torch.optim.SGD's multi-tensor
// (foreach) algorithm, on libtorch's fused _foreach kernels.
import type { Tensor } from '../tensor.ts';
import { foreach } from './foreach.ts';
import { Optimizer, type Group, type ParamGroup } from './optimizer.ts';

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/** Stochastic gradient descent, update for update as torch.optim.SGD(foreach=True). */
export class SGD extends Optimizer<SGDOptions> {
  protected readonly kind = 'SGD';

  constructor(params: Iterable<Tensor> | ParamGroup<SGDOptions>[], o: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...o });
  }

  protected validate(o: SGDOptions): void {
    if (!(o.lr >= 0)) throw new Error(`SGD: lr must be >= 0; got ${o.lr}`);
    if (!(o.momentum >= 0)) throw new Error(`SGD: momentum must be >= 0; got ${o.momentum}`);
    if (!(o.weightDecay >= 0)) throw new Error(`SGD: weightDecay must be >= 0; got ${o.weightDecay}`);
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new Error('SGD: nesterov needs momentum > 0 and dampening 0');
  }

  protected update(g: Group<SGDOptions>, ps: Tensor[], gs: Tensor[]): void {
    let d = g.weightDecay ? foreach.addList(gs, ps, g.weightDecay) : gs;
    if (g.momentum) {
      // A new buffer starts as the gradient itself (no dampening), as torch does.
      const fresh = ps.map((p) => !this.state.get(p)?.momentum_buffer);
      const bufs = ps.map((p, i) => this.stateOf(p, 'momentum_buffer', () => d[i]!.clone()));
      const old = bufs.filter((_, i) => !fresh[i]);
      if (old.length) {
        foreach.mulScalar_(old, g.momentum);
        foreach.addList_(old, d.filter((_, i) => !fresh[i]), 1 - g.dampening);
      }
      d = g.nesterov ? foreach.addList(d, bufs, g.momentum) : bufs;
    }
    foreach.addList_(ps, d, -g.lr);
  }
}
