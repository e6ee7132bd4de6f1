// Tensor math, reductions, views and comparisons: every op against PyTorch (the .venv's torch 2.13,
// one Python process for the whole table) on the same float64 inputs, plus hand-computed cases.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tensor, arange, cat, stack, where, full, linspace, zeros, tidy, type Tensor } from '../lib/index.ts';
import { py, maxAbsDiff } from './helpers.ts';

const flat = (t: Tensor): number[] => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);

// Deterministic inputs, so Python sees the very same values.
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}
const r = lcg(7);
const vals = (n: number) => Array.from({ length: n }, () => Math.round(r() * 1000) / 100);
const inputs = {
  a: { shape: [3, 4], v: vals(12) },
  b: { shape: [3, 4], v: vals(12) },
  c: { shape: [2, 3, 4], v: vals(24) },
  m: { shape: [4, 2], v: vals(8) },
  row: { shape: [4], v: vals(4) },
};
const ours = Object.fromEntries(Object.entries(inputs).map(([k, d]) => [k, tensor(d.v, { shape: d.shape, dtype: 'float64' })])) as Record<keyof typeof inputs, Tensor>;
const { a, b, c, m, row } = ours;
const pos = a.abs().add(0.5);
const i64 = (v: number[]) => tensor(v, { dtype: 'int64' });

// name → [ours, the same op in PyTorch (inputs a, b, c, m, row, pos as torch.float64)]
const table: [string, () => Tensor, string][] = [
  ['add', () => a.add(b), 'a + b'],
  ['add alpha', () => a.add(b, 2.5), 'torch.add(a, b, alpha=2.5)'],
  ['add scalar', () => a.add(3), 'a + 3'],
  ['add broadcast', () => c.add(row), 'c + row'],
  ['sub', () => a.sub(b), 'a - b'],
  ['sub alpha', () => a.sub(b, 0.5), 'torch.sub(a, b, alpha=0.5)'],
  ['mul', () => a.mul(b), 'a * b'],
  ['mul scalar', () => a.mul(-1.5), 'a * -1.5'],
  ['div', () => a.div(b), 'a / b'],
  ['div scalar', () => a.div(4), 'a / 4'],
  ['add_', () => a.clone().add_(b, 2), 'a.clone().add_(b, alpha=2)'],
  ['sub_', () => a.clone().sub_(1), 'a.clone().sub_(1)'],
  ['mul_', () => a.clone().mul_(b), 'a.clone().mul_(b)'],
  ['div_', () => a.clone().div_(2), 'a.clone().div_(2)'],
  ['neg', () => a.neg(), '-a'],
  ['abs', () => a.abs(), 'a.abs()'],
  ['exp', () => a.div(4).exp(), '(a / 4).exp()'],
  ['log', () => pos.log(), 'pos.log()'],
  ['sqrt', () => pos.sqrt(), 'pos.sqrt()'],
  ['rsqrt', () => pos.rsqrt(), 'pos.rsqrt()'],
  ['pow scalar', () => a.pow(3), 'a.pow(3)'],
  ['pow tensor', () => pos.pow(b.div(5)), 'pos.pow(b / 5)'],
  ['clamp', () => a.clamp(-2, 3), 'a.clamp(-2, 3)'],
  ['clamp min only', () => a.clamp(0, null), 'a.clamp(min=0)'],
  ['clamp max only', () => a.clamp(null, 1), 'a.clamp(max=1)'],
  ['relu', () => a.relu(), 'a.relu()'],
  ['relu_', () => a.clone().relu_(), 'a.clone().relu_()'],
  ['sigmoid', () => a.sigmoid(), 'a.sigmoid()'],
  ['tanh', () => a.tanh(), 'a.tanh()'],
  ['maximum', () => a.maximum(b), 'torch.maximum(a, b)'],
  ['minimum', () => a.minimum(b), 'torch.minimum(a, b)'],
  ['sum', () => c.sum(), 'c.sum()'],
  ['sum dim', () => c.sum(1), 'c.sum(1)'],
  ['sum dims keepdim', () => c.sum([0, 2], true), 'c.sum([0, 2], keepdim=True)'],
  ['mean', () => c.mean(), 'c.mean()'],
  ['mean dim keepdim', () => c.mean(-1, true), 'c.mean(-1, keepdim=True)'],
  ['var', () => c.var(), 'c.var()'],
  ['var dim', () => c.var(1), 'c.var(1)'],
  ['var correction 0 keepdim', () => c.var([0, 2], { correction: 0, keepdim: true }), 'c.var([0, 2], correction=0, keepdim=True)'],
  ['std', () => c.std(), 'c.std()'],
  ['std dim', () => c.std(2, { keepdim: true }), 'c.std(2, keepdim=True)'],
  ['max all', () => c.max(), 'c.max()'],
  ['max dim values', () => c.max(1).values, 'c.max(1).values'],
  ['max dim indices', () => c.max(1).indices, 'c.max(1).indices'],
  ['max keepdim', () => c.max(2, true).values, 'c.max(2, keepdim=True).values'],
  ['min all', () => c.min(), 'c.min()'],
  ['min dim values', () => c.min(0).values, 'c.min(0).values'],
  ['min dim indices', () => c.min(0).indices, 'c.min(0).indices'],
  ['argmax', () => c.argmax(), 'c.argmax()'],
  ['argmax dim', () => c.argmax(2), 'c.argmax(2)'],
  ['argmax keepdim', () => c.argmax(1, true), 'c.argmax(1, keepdim=True)'],
  ['argmin dim', () => c.argmin(0), 'c.argmin(0)'],
  ['topk values', () => a.topk(2).values, 'a.topk(2).values'],
  ['topk indices', () => a.topk(2).indices, 'a.topk(2).indices'],
  ['topk smallest dim0', () => a.topk(2, 0, false).values, 'a.topk(2, 0, largest=False).values'],
  ['sort', () => a.sort(1, true).values, 'a.sort(1, descending=True).values'],
  ['norm', () => a.norm(), 'a.norm()'],
  ['matmul 2d', () => a.matmul(m), 'a @ m'],
  ['matmul batched', () => c.matmul(m), 'c @ m'],
  ['matmul vector', () => a.matmul(row), 'a @ row'],
  ['eq', () => a.eq(b), 'a == b'],
  ['ne scalar', () => a.round().ne(1), 'a.round() != 1'],
  ['gt', () => a.gt(b), 'a > b'],
  ['lt scalar', () => a.lt(0), 'a < 0'],
  ['ge', () => a.ge(b), 'a >= b'],
  ['le scalar', () => a.le(0.5), 'a <= 0.5'],
  ['where', () => where(a.gt(0), a, b), 'torch.where(a > 0, a, b)'],
  ['maskedFill', () => a.maskedFill(a.lt(0), -7), 'a.masked_fill(a < 0, -7)'],
  ['sign', () => a.sign(), 'a.sign()'],
  ['floor', () => a.floor(), 'a.floor()'],
  ['round', () => a.round(), 'a.round()'],
  ['view', () => c.view(4, 6), 'c.view(4, 6)'],
  ['reshape -1', () => c.reshape([-1, 3]), 'c.reshape(-1, 3)'],
  ['permute', () => c.permute(2, 0, 1).contiguous(), 'c.permute(2, 0, 1)'],
  ['transpose', () => c.transpose(0, 2), 'c.transpose(0, 2)'],
  ['flatten', () => c.flatten(1), 'c.flatten(1)'],
  ['squeeze/unsqueeze', () => a.unsqueeze(1).squeeze(1), 'a.unsqueeze(1).squeeze(1)'],
  ['narrow', () => c.narrow(2, 1, 2), 'c.narrow(2, 1, 2)'],
  ['slice step', () => c.slice(2, 1, null, 2), 'c[:, :, 1::2]'],
  ['slice negative', () => c.slice(1, -2), 'c[:, -2:]'],
  ['select', () => c.select(1, 2), 'c.select(1, 2)'],
  ['indexSelect', () => a.indexSelect(1, i64([3, 0, 3])), 'a.index_select(1, torch.tensor([3, 0, 3]))'],
  ['gather', () => a.gather(1, tensor([0, 3, 1, 1, 2, 0], { shape: [3, 2], dtype: 'int64' })), 'a.gather(1, torch.tensor([[0, 3], [1, 1], [2, 0]]))'],
  ['cat', () => cat([a, b], 1), 'torch.cat([a, b], 1)'],
  ['stack', () => stack([a, b], 1), 'torch.stack([a, b], 1)'],
  ['expand', () => row.expand(3, 4).contiguous(), 'row.expand(3, 4)'],
  ['to float32 and back', () => a.to('float32').to('float64'), 'a.float().double()'],
  ['to int32', () => a.to('int32'), 'a.to(torch.int32)'],
];

test('every op in the table equals PyTorch 2.13 on the same inputs', () => tidy(() => {
  const results = table.map(([, f]) => tidy(() => flat(f())));
  const code = `import json, torch
torch.set_printoptions(precision=17)
I = json.loads(${JSON.stringify(JSON.stringify(inputs))})
g = {k: torch.tensor(d['v'], dtype=torch.float64).reshape(d['shape']) for k, d in I.items()}
g['pos'] = g['a'].abs() + 0.5
g['torch'] = torch
exprs = json.loads(${JSON.stringify(JSON.stringify(table.map(([, , e]) => e)))})
print(json.dumps([eval(e, g).double().reshape(-1).tolist() for e in exprs]))`;
  const ref = py<number[][]>(code);
  const bad: string[] = [];
  table.forEach(([name], i) => {
    const d = results[i]!.length === ref[i]!.length ? maxAbsDiff(results[i]!, ref[i]!) : Infinity;
    if (!(d <= 1e-12 * Math.max(1, ...ref[i]!.map(Math.abs)))) bad.push(`${name}: max diff ${d} (ours ${results[i]!.slice(0, 4)}, torch ${ref[i]!.slice(0, 4)})`);
  });
  assert.equal(bad, []);
}));

test('shapes of views and reductions follow PyTorch (hand-derived)', () => tidy(() => {
  assert.equal(c.sum([0, 2], true).shape, [1, 3, 1]);
  assert.equal(c.permute(2, 0, 1).shape, [4, 2, 3]);
  assert.equal(c.permute(2, 0, 1).isContiguous, false);
  assert.equal(c.flatten().shape, [24]);
  assert.equal(a.topk(2, 0).values.shape, [2, 4]);
  assert.equal(stack([a, b]).shape, [2, 3, 4]);
  assert.equal(c.ndim, 3);
  assert.equal(c.numel, 24);
  assert.equal(row.expand(3, 4).strides, [0, 1]);
}));

test('creation ops give the hand-computed values', () => tidy(() => {
  assert.equal(flat(full([2, 2], 7)), [7, 7, 7, 7]);
  assert.equal(flat(linspace(0, 1, 5)), [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(flat(arange(2, 9, 3)), [2, 5, 8]);
  assert.is(arange(3).dtype, 'int64');
  assert.equal(flat(arange(0, 1, 0.25, { dtype: 'float64' })), [0, 0.25, 0.5, 0.75]);
  assert.equal(flat(tensor(new Float64Array([1.5, -2]))), [1.5, -2]);
  assert.equal(flat(tensor(new Uint8Array([0, 255]))), [0, 255]);
  assert.equal(flat(tensor([true, false])), [1, 0]);
  assert.is(tensor([true, false]).dtype, 'bool');
  assert.equal(flat(tensor([1.5, -2.25], { dtype: 'float16' })), [1.5, -2.25]);
  assert.equal(zeros([0, 3]).shape, [0, 3]);
}));

test('integer tensors stay integers under integral scalars, as in PyTorch (hand-computed)', () => tidy(() => {
  const t = tensor([1, 2, 3], { dtype: 'int64' });
  assert.is(t.add(2).dtype, 'int64');
  assert.equal(flat(t.mul(3)), [3, 6, 9]);
  assert.is(t.add(0.5).dtype, 'float32');
  assert.is(t.div(2).dtype, 'float32');
  assert.equal(flat(t.div(2)), [0.5, 1, 1.5]);
}));

test('channels-last layout: same values, NHWC strides (hand-derived)', () => tidy(() => {
  const x = arange(24, undefined, 1, { dtype: 'float32' }).reshape(1, 2, 3, 4);
  const y = x.contiguous('channelsLast');
  assert.ok(y.isChannelsLast);
  assert.not.ok(x.isChannelsLast);
  assert.equal(y.strides, [24, 1, 8, 2]);
  assert.equal(y.shape, [1, 2, 3, 4]);
  assert.ok(y.equal(x));
  assert.equal(flat(y.contiguous()), flat(x));
}));

test('to() with nonBlocking and copy on CPU keeps values; copy gives new memory', () => tidy(() => {
  const x = tensor([1, 2, 3]);
  const y = x.to({ device: 'cpu', nonBlocking: true });
  assert.equal(flat(y), [1, 2, 3]);
  const z = x.to('cpu', { copy: true });
  z.add_(1);
  assert.equal(flat(x), [1, 2, 3]);
  assert.equal(flat(x.to({ dtype: 'float64', nonBlocking: true })), [1, 2, 3]);
}));

test('item() and toString() match PyTorch reprs of the same tensors (torch 2.13)', () => tidy(() => {
  assert.is(tensor([2.5]).item(), 2.5);
  assert.is(tensor([true]).item() as unknown, true);
  const ours = [
    tensor(3), tensor([true, false]), tensor([1.5, 2], { dtype: 'float64' }), zeros([0]), zeros([0, 3]), tensor([1e-5, 1]),
    tensor([123456.7, 1]), tensor([[1, 2], [3, 4]]), tensor([1, 2], { dtype: 'int32' }), tensor([NaN, 1.5, Infinity]),
    tensor([-1.5, 2.25]), tensor([1, 1], { requiresGrad: true }), tensor([1, 2], { dtype: 'float16' }),
  ].map(String);
  const ref = py<string[]>(`import json, torch
print(json.dumps([repr(t) for t in [torch.tensor(3.), torch.tensor([True, False]), torch.tensor([1.5, 2], dtype=torch.float64),
  torch.zeros(0), torch.zeros(0, 3), torch.tensor([1e-5, 1.]), torch.tensor([123456.7, 1.]), torch.tensor([[1., 2.], [3., 4.]]),
  torch.tensor([1, 2], dtype=torch.int32), torch.tensor([float('nan'), 1.5, float('inf')]), torch.tensor([-1.5, 2.25]),
  torch.ones(2, requires_grad=True), torch.tensor([1., 2.], dtype=torch.float16)]]))`);
  assert.equal(ours, ref);
}));

test.run();
