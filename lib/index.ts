// Public exports of resnet-ts.
export { Tensor, tidy, keep, dispose, memory, noGrad, enableGrad, isGradEnabled, autocast } from './tensor.ts';
export type { DType, Device, Shape, TensorLike } from './tensor.ts';
export {
  tensor, zeros, ones, empty, full, rand, randn, randint, randperm, arange, linspace, zerosLike, onesLike,
  cat, stack, where, manualSeed, getRngState, setRngState,
} from './creation.ts';
export type { CreateOptions } from './creation.ts';
export { cuda, setNumThreads, getNumThreads, torchVersion } from './device.ts';
export * as F from './nn/functional.ts';
