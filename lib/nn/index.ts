// nn: the Module base class, layers and initialisers (torch.nn's names in camelCase).
export { Module, type LoadResult } from './module.ts';
export {
  Conv2d, BatchNorm2d, SyncBatchNorm, Linear, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Identity, Sequential, chain, type BatchNormOptions, type Conv2dOptions,
} from './layers.ts';
export * as init from './init.ts';
export * as functional from './functional.ts';
