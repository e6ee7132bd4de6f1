// Inference: optimize() (fused, BN-folded, channels-last, bf16-capable copies of eval-mode models) and its modules.
export { optimize, type OptimizeOptions } from './optimize.ts';
export { FusedNet, FusedResidual, FusedConv2d, FusedAffine, FUSED_MODULES } from './fused.ts';
export type { NetSpec, UnitSpec, ConvSpec, AffineSpec, ShortcutSpec, ComputeDType } from './fused.ts';
export { onednn } from './onednn.ts';
