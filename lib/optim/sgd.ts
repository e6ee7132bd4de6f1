// SGD with momentum, dampening, Nesterov and L2 weight decay: torch.optim.SGD's multi-tensor
// (foreach) algorithm, on libtorch's fused _foreach kernels.
import { Tensor, noGrad, tidy } from '../tensor.ts';
import { native, type Handle } from '../native.ts';
import { Optimizer, type ParamGroup } from './optimizer.ts';

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

const wrap = (hs: Handle[]): Handle[] => hs.map((h) => new Tensor(h).h);

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

  step(): void {
    noGrad(() => tidy(() => {
      for (const g of this.groups) {
        const { ps, gs } = this.withGrads(g);
        if (!ps.length) continue;
        const pH = ps.map((p) => p.h);
        let d = g.weightDecay ? wrap(native.foreachAddList(gs, pH, g.weightDecay)) : gs;
        if (g.momentum) {
          // A new buffer starts as the gradient itself (no dampening), as torch does.
          const fresh = ps.map((p) => !this.state.get(p)?.momentum_buffer);
          const bufs = ps.map((p, i) => this.stateOf(p, 'momentum_buffer', () => new Tensor(native.clone(d[i]!))).h);
          const old = bufs.filter((_, i) => !fresh[i]);
          if (old.length) {
            const dOld = d.filter((_, i) => !fresh[i]);
            native.foreachMulScalar_(old, g.momentum);
            native.foreachAddList_(old, dOld, 1 - g.dampening);
          }
          d = g.nesterov ? wrap(native.foreachAddList(d, bufs, g.momentum)) : bufs;
        }
        native.foreachAddList_(pH, d, -g.lr);
      }
    }));
  }
}
