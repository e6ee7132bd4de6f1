// models: the ImageNet and CIFAR families (ResNets and DenseNets) as factory functions, their blocks, the registry, pretrained weights and summary().
export {
  ResNet, resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d,
  wide_resnet50_2, wide_resnet101_2, type ResNetOptions, type ResNetSpec,
} from './resnet.ts';
export {
  CifarResNet, resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202, plain20, plain32, plain44, plain56, plain110,
  preact_resnet110, preact_resnet164, preact_resnet1001, resnext29_8x64d, resnext29_16x64d, type CifarOptions, type CifarSpec,
} from './cifar.ts';
export {
  DenseNet, DenseLayer, DenseBlock, Transition, remapLegacyKeys, densenet121, densenet161, densenet169, densenet201,
  type DenseNetOptions, type DenseNetConfig, type DenseNetSpec,
} from './densenet.ts';
export { densenet_bc_100_k12, densenet_bc_250_k24, densenet_bc_190_k40, type CifarDenseNetSpec } from './cifar-densenet.ts';
export { BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ZeroPadShortcut, type BlockOptions } from './blocks.ts';
export { list, create, family, weights, type ModelOptions, type PretrainedOptions } from './registry.ts';
export {
  findWeights, weightsForFile, resolveWeights, resolveLocalWeights, readStateDict, loadPretrained, applyWeights, classifier,
  type Weights, type WeightsSpec, type EvalTransforms, type ResolvedWeights, type FetchWeightsOptions, type ApplyWeightsOptions,
} from './weights.ts';
export { summary, type Summary, type SummaryRow } from './summary.ts';
