// Public exports of resnet-ts.
export { Tensor, tidy, keep, dispose, memory, noGrad, enableGrad, isGradEnabled, autocast, isDevice } from './tensor.ts';
export type { DType, Device, Shape, TensorLike } from './tensor.ts';
export {
  tensor, zeros, ones, empty, full, rand, randn, randint, randperm, arange, linspace, zerosLike, onesLike,
  cat, stack, where, manualSeed, getRngState, setRngState,
} from './creation.ts';
export type { CreateOptions } from './creation.ts';
export { cuda, setNumThreads, getNumThreads, torchVersion, withAmp, type Amp } from './device.ts';
export { CUDAGraph, CudaOutOfMemoryError, backends, cudaWarmup, graphPoolHandle } from './cuda.ts';
export type { CaptureMode, GraphPool } from './cuda.ts';
export { SetupError } from './addon.ts';
export * as F from './nn/functional.ts';
export * as io from './io/index.ts';
export * as distributed from './distributed/index.ts';
export * as nn from './nn/index.ts';
export * as models from './models/index.ts';
export * as hub from './hub/index.ts';
export * as explain from './explain/index.ts';
export * as optim from './optim/index.ts';
export * as data from './data/index.ts';
export * as train from './train/index.ts';
export * as inference from './inference/index.ts';
export * as serve from './serve/index.ts';
export * as cpu from './cpu.ts';
