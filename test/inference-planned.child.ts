// Child of inference-planned.test.ts, run with oneDNN capped to AVX2 (DNNL_MAX_CPU_ISA=AVX2, read when libdnnl
// loads), where it has no bf16 pooling kernel at all: the fused bf16 network and plannedMaxPool must fall back to
// libtorch's pooling, not throw; and the float32 ResNeXt, whose 4-channels-per-group convolutions oneDNN 2.6 has only
// its gemm kernel for there (refused: libtorch's oneDNN runs them), must still equal the unfused model; a 3x3
// convolution (groups 1) is left to libtorch's oneDNN at every batch size (libtorchFaster), equal to aten's. Prints one
// JSON line for the parent.
import { F, inference, models, noGrad, randn, tidy } from '../lib/index.ts';
import { FusedConv2d } from '../lib/inference/fused.ts';
import { planCacheSize, plannedKernels, plannedMaxPool } from '../lib/inference/onednn.ts';
import { native } from '../lib/native.ts';

const out = noGrad(() => tidy(() => {
  const x = randn([2, 16, 9, 9]).sub(4);
  const pool = (dtype: 'float32' | 'bfloat16'): number | null => {
    const xi = x.to(dtype);
    const y = plannedMaxPool(xi, 3, 2, 1);
    return y === null ? null : y.to('float32').sub(F.maxPool2d(xi, 3, { stride: 2, padding: 1 }).to('float32')).abs().max().item();
  };
  const model = models.resnet18().eval();
  const net = inference.optimize(model, { amp: 'bf16' });
  const img = randn([1, 3, 64, 64]);
  const logits = net.forward(img);
  const ref = model.forward(img);
  const err = logits.sub(ref).abs().max().item() / ref.abs().max().item();
  const rx = models.resnext50_32x4d().eval();
  const rxNet = inference.optimize(rx);
  const rxImg = randn([1, 3, 64, 64]);
  const rxRef = rx.forward(rxImg);
  const rxErr = rxNet.forward(rxImg).sub(rxRef).abs().max().item() / rxRef.abs().max().item();
  const unit = rxNet.child('layer1').child('0');
  const kernels = (name: string): string[] => Object.values(plannedKernels(unit.child<FusedConv2d>(name)));
  const conv3 = new FusedConv2d({ inChannels: 64, outChannels: 64, kernelSize: [3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1, relu: true, dtype: 'float32' });
  conv3.weight.copy_(randn([64, 64, 3, 3]).mul(0.05));
  conv3.bias.copy_(randn([64]));
  const byBatch = [1, 2].map((n) => {
    const xi = randn([n, 64, 14, 14]).contiguous('channelsLast');
    const y = conv3.forward(xi);
    const ref = F.conv2d(xi, conv3.weight, conv3.bias, { padding: [1, 1] }).relu();
    return { batch: n, relErr: y.sub(ref).abs().max().item() / ref.abs().max().item() };
  });
  // A server fed many batch sizes: the 3x3 is declined on its first input, and no later shape makes a plan again.
  const small = new FusedConv2d({ inChannels: 8, outChannels: 8, kernelSize: [3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1, relu: false, dtype: 'float32' });
  small.weight.copy_(randn([8, 8, 3, 3]));
  let smallErr = 0;
  const makePlan = native.dnnlConvPlan;
  let planCalls = 0;
  (native as { dnnlConvPlan: typeof makePlan }).dnnlConvPlan = (...args) => (planCalls++, makePlan(...args));
  try {
    for (let n = 1; n < 72; n++) {
      const xi = randn([n, 8, 4, 4]).contiguous('channelsLast');
      const ref = F.conv2d(xi, small.weight, small.bias, { padding: [1, 1] });
      smallErr = Math.max(smallErr, small.forward(xi).sub(ref).abs().max().item() / ref.abs().max().item());
    }
  } finally {
    (native as { dnnlConvPlan: typeof makePlan }).dnnlConvPlan = makePlan;
  }
  return {
    manyBatches: { ...planCacheSize(small), planCalls, relErr: smallErr },
    float32: pool('float32'), bfloat16: pool('bfloat16'), bf16NetRelErr: err, conv3x3: { byBatch, kernels: plannedKernels(conv3) },
    resnextRelErr: rxErr, resnextKernels: { conv1: kernels('conv1'), grouped: kernels('conv2') },
  };
}));
console.log(JSON.stringify(out));
