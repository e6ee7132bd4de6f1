// Optimizers and learning-rate schedules.
export { Optimizer, type ParamGroup, type Group, type OptimizerState } from './optimizer.ts';
export { SGD, type SGDOptions } from './sgd.ts';
export { AdamW, type AdamWOptions } from './adamw.ts';
export { LRScheduler, multiStep, cosine, constant, warmup, oneCycle, type LrFn, type OneCycleOptions } from './schedule.ts';
export { noDecayOnNormAndBias } from './groups.ts';
export { clipGradNorm } from './clip.ts';
export { GradScaler, type GradScalerOptions } from './grad-scaler.ts';
