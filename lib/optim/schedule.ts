// Learning-rate schedules, stepped once per optimizer step, with torch.optim.lr_scheduler's values:
// MultiStepLR, CosineAnnealingLR, LinearLR warm-up (as SequentialLR before another), OneCycleLR.
import type { Optimizer } from './optimizer.ts';

/** The lr of a group at a step, from the group's initial lr. */
export type LrFn = (step: number, base: number) => number;

/** lr × gamma at each milestone (torch MultiStepLR). */
export function multiStep(milestones: readonly number[], gamma = 0.1): LrFn {
  const sorted = [...milestones].sort((a, b) => a - b);
  return (step, base) => base * gamma ** sorted.filter((m) => m <= step).length;
}

/** Cosine decay from the base lr to etaMin over tMax steps (torch CosineAnnealingLR, closed form). */
export function cosine(tMax: number, etaMin = 0): LrFn {
  if (!(tMax > 0)) throw new Error(`cosine: tMax must be > 0; got ${tMax}`);
  return (step, base) => etaMin + ((base - etaMin) * (1 + Math.cos((Math.PI * step) / tMax))) / 2;
}

/** A constant lr. */
export function constant(): LrFn {
  return (_step, base) => base;
}

/** Linear warm-up from startFactor × lr over `steps`, then `after` restarted at 0 (torch LinearLR + SequentialLR). */
export function warmup(steps: number, after: LrFn, startFactor = 0.1): LrFn {
  if (!(steps >= 0)) throw new Error(`warmup: steps must be >= 0; got ${steps}`);
  return (step, base) => (step < steps ? base * (startFactor + ((1 - startFactor) * step) / steps) : after(step - steps, base));
}

export interface OneCycleOptions {
  pctStart?: number;
  divFactor?: number;
  finalDivFactor?: number;
  baseMomentum?: number;
  maxMomentum?: number;
}

const annealCos = (start: number, end: number, pct: number): number => end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);

/** One-cycle (Smith & Topin): cosine up to the base lr, then down; momentum the other way (torch OneCycleLR). */
export function oneCycle(totalSteps: number, o: OneCycleOptions = {}): { lr: LrFn; momentum: (step: number) => number } {
  const { pctStart = 0.3, divFactor = 25, finalDivFactor = 1e4, baseMomentum = 0.85, maxMomentum = 0.95 } = o;
  if (!(totalSteps > 1)) throw new Error(`oneCycle: totalSteps must be > 1; got ${totalSteps}`);
  const peak = pctStart * totalSteps - 1;
  const phase = (step: number, up: [number, number], down: [number, number]): number => {
    if (step > totalSteps) throw new Error(`oneCycle: step ${step} is past totalSteps ${totalSteps}`);
    return step <= peak ? annealCos(up[0], up[1], step / peak) : annealCos(down[0], down[1], (step - peak) / (totalSteps - 1 - peak));
  };
  return {
    lr: (step, base) => {
      const initial = base / divFactor;
      return phase(step, [initial, base], [base, initial / finalDivFactor]);
    },
    momentum: (step) => phase(step, [maxMomentum, baseMomentum], [baseMomentum, maxMomentum]),
  };
}

/** Sets each group's lr (and momentum, for one-cycle) from the step count. */
export class LRScheduler {
  private count = 0;

  constructor(
    private readonly optimizer: Optimizer<{ lr: number }>,
    private readonly lrFn: LrFn,
    private readonly momentumFn?: (step: number) => number,
  ) {
    this.apply();
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.count;
  }

  /** Each group's current lr. */
  get lr(): number[] {
    return this.optimizer.groups.map((g) => g.lr);
  }

  /** Advances one optimizer step. */
  step(): void {
    this.count++;
    this.apply();
  }

  private apply(): void {
    for (const g of this.optimizer.groups) {
      g.lr = this.lrFn(this.count, g.initialLr);
      if (this.momentumFn && 'momentum' in g) (g as { momentum: number }).momentum = this.momentumFn(this.count);
    }
  }

  stateDict(): { steps: number } {
    return { steps: this.count };
  }

  loadStateDict(s: { steps: number }): void {
    if (!Number.isInteger(s?.steps) || s.steps < 0) throw new Error(`scheduler state: steps must be a non-negative integer; got ${s?.steps}`);
    this.count = s.steps;
    this.apply();
  }
}
