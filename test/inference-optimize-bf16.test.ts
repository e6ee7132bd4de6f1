// bf16 accuracy guards. Training: the README's 1-epoch Fashion-MNIST recipe (resnet20, batch 128, SGD 0.9,
// lr 0.1 cosine, wd 1e-4, no augmentation) with --amp bf16 against fp32. The full recipe twice costs ~3 min of
// CI's 2 cores, so CI runs it on the first 6000 training images (47 steps) and 2000 test images, where two
// fp32 runs with different rounding already land ~1 point apart, and allows 2 points; the full recipe (0.5
// points) is run by hand and reported in the README. Inference: the fp32-trained net, fused in fp32 and in
// bf16, must pick the same class for ≥ 99 % of 2000 test images (a trained model: no random-init near-ties).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { data, inference, io, models, noGrad, tensor, tidy } from '../lib/index.ts';
import { root, tmp } from './helpers.ts';

const dir = tmp('inference-bf16-');
const RECIPE = ['--model', 'resnet20', '--epochs', '1', '--batch-size', '128', '--lr', '0.1', '--schedule', 'cosine', '--wd', '1e-4',
  '--augment', 'none', '--limit-train', '6000', '--limit-test', '2000', '--seed', '0'];

function train(amp: 'fp32' | 'bf16'): { testAccuracy: number } {
  const out = join(dir, amp);
  execFileSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'train.ts'), ...RECIPE, ...(amp === 'bf16' ? ['--amp', 'bf16'] : []), '--out', out],
    { encoding: 'utf8', timeout: 900_000, stdio: ['ignore', 'ignore', 'pipe'] });
  return JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
}

test('bf16 training: the 1-epoch recipe (6000 images) ends within 2 points of fp32', () => {
  const fp32 = train('fp32');
  const bf16 = train('bf16');
  assert.ok(fp32.testAccuracy > 0.6, `fp32 reached ${fp32.testAccuracy}`);
  const gap = Math.abs(bf16.testAccuracy - fp32.testAccuracy) * 100;
  assert.ok(gap <= 2, `bf16 ${bf16.testAccuracy} vs fp32 ${fp32.testAccuracy}: ${gap.toFixed(2)} points`);
});

test('bf16 inference: the fused bf16 net picks the fp32 class for ≥ 99 % of 2000 Fashion-MNIST test images', () => {
  const sd = io.loadSafetensors(join(dir, 'fp32', 'checkpoint.safetensors'));
  const m = models.create('resnet20', { inChannels: 1, numClasses: 10 });
  tidy(() => {
    const own = Object.fromEntries(Object.entries(sd).filter(([k]) => k.startsWith('model.')).map(([k, v]) => [k.slice(6), v]));
    m.loadStateDict(own);
  });
  for (const t of Object.values(sd)) t.dispose();
  m.eval();
  const set = data.limit(data.loadFashionMnist('test'), 2000);
  const px = new Float32Array(set.images.length);
  for (let i = 0; i < px.length; i++) px[i] = (set.images[i]! / 255 - set.mean[0]!) / set.std[0]!;
  const x = tensor(px, { shape: [set.labels.length, 1, 28, 28] });
  const fp32 = inference.optimize(m);
  const bf16 = inference.optimize(m, { amp: 'bf16' });
  const [agree, correct] = tidy(() => {
    const a = noGrad(() => fp32.forward(x)).argmax(1);
    const b = noGrad(() => bf16.forward(x)).argmax(1);
    const labels = tensor(Int32Array.from(set.labels), { shape: [set.labels.length] }).to('int64');
    return [a.eq(b).sum().item() / set.labels.length, a.eq(labels).sum().item() / set.labels.length];
  });
  assert.ok(correct > 0.6, `the fp32 net is trained (accuracy ${correct})`);
  assert.ok(agree >= 0.99, `top-1 agreement ${(100 * agree).toFixed(2)} %`);
  for (const t of [x]) t.dispose();
  fp32.dispose();
  bf16.dispose();
  m.dispose();
});

test.run();
