// Child of inference-planned.test.ts, run with oneDNN capped to AVX2 (DNNL_MAX_CPU_ISA=AVX2, read when libdnnl
// loads), where it has no bf16 pooling kernel at all: the fused bf16 network and plannedMaxPool must fall back to
// libtorch's pooling, not throw. Prints one JSON line for the parent.
import { F, inference, models, noGrad, randn, tidy } from '../lib/index.ts';
import { plannedMaxPool } from '../lib/inference/onednn.ts';

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
  return { float32: pool('float32'), bfloat16: pool('bfloat16'), bf16NetRelErr: err };
}));
console.log(JSON.stringify(out));
