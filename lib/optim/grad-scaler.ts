// Loss scaling for float16 training (torch.amp.GradScaler): the loss is multiplied so small
// gradients survive in fp16; steps whose gradients overflow are skipped and the scale backs off.
import { Tensor, noGrad, tidy } from '../tensor.ts';
import { foreach } from './foreach.ts';
import type { Optimizer } from './optimizer.ts';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
}

/** Dynamic loss scale with torch's defaults (2^16, ×2 after 2000 good steps, ×0.5 on overflow). */
export class GradScaler {
  scale: number;
  private goodSteps = 0;
  private readonly growth: number;
  private readonly backoff: number;
  private readonly interval: number;

  constructor({ initScale = 2 ** 16, growthFactor = 2, backoffFactor = 0.5, growthInterval = 2000 }: GradScalerOptions = {}) {
    this.scale = initScale;
    this.growth = growthFactor;
    this.backoff = backoffFactor;
    this.interval = growthInterval;
  }

  /** Unscales the gradients and steps the optimizer unless any is inf/NaN; returns whether it stepped. */
  step(optimizer: Optimizer<{ lr: number }>): boolean {
    const finite = noGrad(() => tidy(() => {
      const gs = optimizer.groups.flatMap((g) => g.params).map((p) => p.grad).filter((g): g is Tensor => g !== null);
      if (!gs.length) return true;
      foreach.mulScalar_(gs, 1 / this.scale);
      return foreach.norm(gs, 2).every((n) => Number.isFinite(n.item()));
    }));
    if (finite) optimizer.step();
    if (!finite) {
      this.scale *= this.backoff;
      this.goodSteps = 0;
    } else if (++this.goodSteps >= this.interval) {
      this.scale *= this.growth;
      this.goodSteps = 0;
    }
    return finite;
  }

  stateDict(): { scale: number; goodSteps: number } {
    return { scale: this.scale, goodSteps: this.goodSteps };
  }

  loadStateDict(s: { scale: number; goodSteps: number }): void {
    if (!(s?.scale > 0) || !Number.isInteger(s.goodSteps)) throw new Error('grad scaler state: expected { scale > 0, goodSteps }');
    this.scale = s.scale;
    this.goodSteps = s.goodSteps;
  }
}
