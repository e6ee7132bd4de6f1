// AdamW (Loshchilov & Hutter): decoupled weight decay; torch.optim.AdamW's foreach algorithm.
import { tensorFunction, type Tensor } from '../tensor.ts';
import { full, zerosLike } from '../creation.ts';
import { foreach } from './foreach.ts';
import { Optimizer, type Group, type ParamGroup } from './optimizer.ts';

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /**
   * torch.optim.AdamW(fused=True): one kernel pass per tensor instead of seven elementwise passes; values equal torch's
   * fused AdamW (that kernel's rounding), not its default path. Parameters, gradients and moments must share one dense
   * layout (else a clear error).
   */
  fused: boolean;
}

const fusedAdamw = tensorFunction('fusedAdamw_');

/** AdamW, update for update as torch.optim.AdamW(foreach=True). */
export class AdamW extends Optimizer<AdamWOptions> {
  protected readonly kind = 'AdamW';

  constructor(params: Iterable<Tensor> | ParamGroup<AdamWOptions>[], o: Partial<AdamWOptions> = {}) {
    super(params, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2, fused: false, ...o });
  }

  protected validate(o: AdamWOptions): void {
    if (!(o.lr >= 0)) throw new Error(`AdamW: lr must be >= 0; got ${o.lr}`);
    if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1)) throw new Error(`AdamW: betas must lie in [0, 1); got ${o.beta1}, ${o.beta2}`);
    if (!(o.eps >= 0)) throw new Error(`AdamW: eps must be >= 0; got ${o.eps}`);
    if (!(o.weightDecay >= 0)) throw new Error(`AdamW: weightDecay must be >= 0; got ${o.weightDecay}`);
  }

  protected update(g: Group<AdamWOptions>, ps: Tensor[], gs: Tensor[]): void {
    const m = ps.map((p) => this.stateOf(p, 'exp_avg', () => zerosLike(p)));
    const v = ps.map((p) => this.stateOf(p, 'exp_avg_sq', () => zerosLike(p)));
    for (const p of ps) this.steps.set(p, (this.steps.get(p) ?? 0) + 1);
    if (g.fused) {
      // Each parameter's step count (after this step's increment) as the float32 scalar torch keeps in its state.
      const steps = ps.map((p) => full([], this.steps.get(p)!, { dtype: 'float32', device: p.device }));
      fusedAdamw(ps, gs, m, v, steps, g.lr, g.beta1, g.beta2, g.weightDecay, g.eps);
      return;
    }
    if (g.weightDecay) foreach.mulScalar_(ps, 1 - g.lr * g.weightDecay);
    foreach.lerp_(m, gs, 1 - g.beta1);
    foreach.mulScalar_(v, g.beta2);
    foreach.addcmul_(v, gs, gs, 1 - g.beta2);
    // Parameters added later have fewer steps: bias corrections go per step count.
    const byStep = new Map<number, number[]>();
    ps.forEach((p, i) => {
      const t = this.steps.get(p)!;
      byStep.set(t, [...(byStep.get(t) ?? []), i]);
    });
    for (const [t, idx] of byStep) {
      const pick = <T>(a: T[]): T[] => idx.map((i) => a[i]!);
      const denom = foreach.sqrt(pick(v));
      foreach.mulScalar_(denom, 1 / Math.sqrt(1 - g.beta2 ** t));
      foreach.addScalar_(denom, g.eps);
      foreach.addcdiv_(pick(ps), pick(m), denom, -g.lr / (1 - g.beta1 ** t));
    }
  }
}
