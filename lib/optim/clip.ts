// Gradient-norm clipping over all parameters at once (torch.nn.utils.clip_grad_norm_).
import { Tensor, noGrad, tidy } from '../tensor.ts';
import { foreach } from './foreach.ts';

/** Scales gradients so their joint L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm must be > 0; got ${maxNorm}`);
  return noGrad(() => tidy(() => {
    const gs = [...params].map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (!gs.length) return 0;
    const norms = foreach.norm(gs, 2).map((n) => n.item());
    const total = Math.sqrt(norms.reduce((a, n) => a + n * n, 0));
    const coef = maxNorm / (total + 1e-6);
    if (coef < 1) foreach.mulScalar_(gs, coef);
    return total;
  }));
}
