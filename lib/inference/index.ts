// inference: sessions that run a model's forward off the main thread, sharing its weights, and optimize()
// (fused, BN-folded, channels-last, bf16-capable copies of eval-mode models) with its modules.
export { session, InferenceSession, type SessionOptions, type Prediction, type ImageInput, type Explanation } from './session.ts';
export { registerModuleClass, type ModuleClass } from './session-classes.ts';
export { optimize, UnsupportedModelError, type OptimizeOptions } from './optimize.ts';
export { FusedNet, FusedResidual, FusedConv2d, FusedAffine, FUSED_MODULES } from './fused.ts';
export type { NetSpec, UnitSpec, ConvSpec, AffineSpec, ShortcutSpec, ComputeDType } from './fused.ts';
export { onednn } from './onednn.ts';
