// Child of inference-optimize.test.ts, run with ONEDNN_VERBOSE=1 so oneDNN prints every primitive it runs:
// warms a fused resnet18 at batch 1 and 2, then marks the second forward of each so the parent can check that
// no reorder runs per call and that the bias/ReLU/shortcut went into the convolutions' post-ops.
import { inference, models, noGrad, randn, setNumThreads, tidy } from '../lib/index.ts';

setNumThreads(1);
const net = inference.optimize(models.resnet18().eval());
for (const b of [1, 2]) {
  const x = randn([b, 3, 64, 64]);
  tidy(() => void noGrad(() => net.forward(x)));
  console.log(`---forward b${b}---`);
  tidy(() => void noGrad(() => net.forward(x)));
  console.log('---end---');
  x.dispose();
}
net.dispose();
