// Errors: libtorch failures become catchable JS Errors with libtorch's message and no C++ backtrace;
// argument problems are TypeErrors naming the function and argument; nothing aborts the process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { F, data, models, tensor, zeros, ones, full, arange, randperm, linspace, cuda, setNumThreads, Tensor, tidy } from '../lib/index.ts';
import { native } from '../lib/native.ts';

function error(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

test('shape-mismatched matmul is a catchable Error naming both shapes, without a C++ backtrace', () => tidy(() => {
  const e = error(() => zeros([2, 3]).matmul(zeros([4, 5])));
  assert.instance(e, Error);
  assert.match(e.message, /2x3 and 4x5/);
  assert.match(e.message, /^matmul: /);
  assert.not.match(e.message, /Exception raised from|frame #/);
}));

test('using a disposed tensor throws, as argument or receiver; a second dispose is harmless', () => tidy(() => {
  const a = ones([2]);
  const b = ones([2]);
  a.dispose();
  a.dispose();
  assert.ok(a.isDisposed);
  assert.match(error(() => a.add(b)).message, /argument 'self' is a disposed Tensor/);
  assert.match(error(() => b.add(a)).message, /argument 'other' is a disposed Tensor/);
  assert.match(error(() => a.shape).message, /disposed/);
  assert.match(error(() => a.item()).message, /disposed/);
  assert.match(error(() => native.cat([b.h, a.h], 0)).message, /holds a disposed Tensor/);
  assert.is(String(b.add(1).toArray()), '2,2');
}));

test('wrong argument types are TypeErrors naming the function and the argument', () => tidy(() => {
  const x = ones([2, 2]);
  const cases: [() => unknown, RegExp][] = [
    [() => native.add(x.h, 'a' as never), /add: argument 'other' must be a Tensor/],
    [() => native.add({} as never, x.h), /add: argument 'self' must be a Tensor/],
    [() => native.zeros('3' as never), /zeros: argument 'shape' must be an array of integers/],
    [() => native.zeros([1.5]), /zeros: argument 'shape' must be an integer/],
    [() => native.zeros([2], 999), /zeros: argument 'dtype' must be a supported dtype code/],
    [() => native.transpose(x.h, NaN, 0), /transpose: argument 'dim0' must be an integer/],
    [() => native.sum(x.h, null, 'yes' as never), /sum: argument 'keepdim' must be a boolean/],
    [() => native.crossEntropy(x.h, x.h, null, 'avg', -100, 0), /crossEntropy: argument 'reduction' must be 'mean', 'sum' or 'none'/],
    [() => native.cat([x.h, 5 as never]), /cat: argument 'tensors' must be an array of Tensors/],
    [() => native.conv2d(x.h, x.h, null, [1, 1], [0, 0], [1, 1], Infinity), /conv2d: argument 'groups' must be an integer/],
    [() => native.fromBytes(new Uint8Array(4), [2 ** 40, 2 ** 40], 6), /fromBytes: argument 'shape' must be a shape whose size fits in 64 bits/],
    [() => native.zeros([1], 6, 'gpu'), /zeros: argument 'device' must be 'cpu', 'cuda' or 'cuda:N'/],
    [() => native.setAutocast('cpu', true, native.dtypes.int64!, true), /setAutocast: argument 'dtype' must be float16, bfloat16 or float32/],
    [() => setNumThreads(0), /setNumThreads: argument 'n' must be an integer in 1..1024/],
    [() => x.add('1' as never), /expected a Tensor or a number/],
    [() => zeros([2], { dtype: 'float8' as never }), /dtype must be one of/],
    [() => zeros([2], { device: 'tpu' as never }), /device must be 'cpu', 'cuda' or 'cuda:N'/],
    [() => tensor('abc' as never), /data must be a number, an array or a typed array/],
    [() => tensor([1, 'x'] as never), /data must hold numbers or booleans/],
    // The public surface a model user meets first.
    [() => (models.resnet18() as unknown as { forward(): unknown }).forward(), /conv2d: argument 'input' must be a Tensor/],
    [() => F.linear(undefined as never, x), /linear: argument 'input' must be a Tensor/],
    [() => models.resnet50({ numClasses: 'ten' as never }), /ResNet: numClasses must be a positive integer; got 'ten'/],
    [() => models.resnet20({ inChannels: 0 }), /CifarResNet: inChannels must be a positive integer; got 0/],
    [() => data.imagenet.evalBatch(['cat.jpg'] as never, { resize: 256, crop: 224 }), /evalBatch: image 0 must be a decoded image .* got the string 'cat.jpg'/],
    [() => data.imagenet.evalBatch({ data: new Uint8Array(12), width: 2, height: 2 } as never, { resize: 256, crop: 224 }), /evalBatch: images must be an array/],
  ];
  for (const [fn, re] of cases) {
    const e = error(fn);
    assert.instance(e, TypeError, `${re}: got ${e.constructor.name}: ${e.message}`);
    assert.match(e.message, re);
  }
}));

test('a stale or forged handle is refused, never dereferenced', () => tidy(() => {
  const a = ones([1]);
  const h = a.h;
  a.dispose();
  const b = ones([1]); // may reuse the slot; the generation tells them apart
  assert.match(error(() => native.neg(h)).message, /disposed/);
  assert.is(native.isDisposed(b.h), false);
  assert.instance(error(() => native.neg(Object.create(Object.getPrototypeOf(b.h)))), TypeError);
  assert.instance(error(() => native.neg(new Uint8Array(8) as never)), TypeError);
  assert.instance(error(() => native.neg(5n as never)), TypeError);
  const forged = ((b.h as unknown as bigint) ^ (1n << 28n)) as never; // same slot, another generation
  assert.match(error(() => native.neg(forged)).message, /disposed/);
  assert.instance(error(() => new Tensor({} as never)), TypeError);
}));

test('CUDA requests on a CPU-only build are JS errors', () => tidy(() => {
  if (cuda.isAvailable()) return;
  // A CUDA build without a GPU (CI's build-cuda/) says there is no driver instead.
  assert.match(error(() => ones([2]).to('cuda')).message, /cuda|NVIDIA driver/i);
  assert.match(error(() => zeros([2], { device: 'cuda:1' })).message, /cuda|NVIDIA driver/i);
  assert.match(error(() => ones([2]).to({ device: 'cuda', nonBlocking: true })).message, /cuda|NVIDIA driver/i);
  assert.match(error(() => ones([2]).pinMemory()).message, /pinMemory: .*(accelerator|NVIDIA driver)/);
  assert.equal(cuda.memory(), { allocated: 0, reserved: 0, peakAllocated: 0 }); // torch.cuda.memory_allocated() is 0 too
}));

test('absurd sizes are refused before any allocation (no abort, no OOM kill)', () => tidy(() => {
  const huge: [() => Tensor, RegExp][] = [
    [() => zeros([1e12, 1e12]), /overflow/],
    [() => zeros([1e12]), /refusing to allocate 4000000000000 bytes/],
    [() => full([2 ** 40, 16], 1), /refusing to allocate/],
    [() => arange(0, 1e15), /refusing to allocate/],
    [() => randperm(1e13), /refusing to allocate/],
    [() => linspace(0, 1, 1e13), /refusing to allocate/],
    [() => ones([1]).expand([1e6, 1e6]).contiguous(), /refusing to allocate/],
    [() => F.pad(ones([1]), [1e12, 0]), /refusing to allocate/],
    [() => F.conv2d(ones([1, 1, 1, 1]), ones([1, 1, 1, 1]), null, { padding: 1e7 }), /refusing to allocate/],
  ];
  for (const [fn, re] of huge) assert.match(error(fn).message, re);
  assert.match(error(() => zeros([-1])).message, /negative/);
}));

test('bad values reach libtorch checks, not crashes: indices, targets, groups, probabilities', () => tidy(() => {
  const idx = tensor([100], { dtype: 'int64' });
  assert.match(error(() => ones([3]).gather(0, idx)).message, /out of bounds/);
  assert.match(error(() => ones([3]).indexSelect(0, idx)).message, /out of range/);
  assert.match(error(() => F.crossEntropy(ones([2, 3]), tensor([5, 0], { dtype: 'int64' }))).message, /out of bounds/);
  assert.match(error(() => F.conv2d(ones([1, 2, 4, 4]), ones([2, 1, 1, 1]), null, { groups: 0 })).message, /groups/);
  assert.match(error(() => F.dropout(ones([2]), 2)).message, /probability/);
  assert.match(error(() => F.batchNorm(ones([2, 3]), ones([2]), ones([2]), { training: true })).message, /running_mean/);
  const g = ones([2], { requiresGrad: true });
  assert.match(error(() => { g.grad = ones([3]); }).message, /setGrad: assigned grad \[3\]/);
  assert.match(error(() => ones([2]).sum().backward()).message, /does not require grad/);
}));

test.run();
