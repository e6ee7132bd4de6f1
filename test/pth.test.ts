// io.loadPth: state dicts written by torch.save in Debian's torch 1.13 (/usr/bin/python3) and the
// .venv's torch 2.13; the reference values are Python's own readout of the same tensors, printed as
// JSON by the run that saved them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { io, memory, type Tensor } from '../lib/index.ts';
import { py, tmp, torchPython, visionPython } from './helpers.ts';

const dir = tmp('pth-');

type PyTensor = { dtype: string; shape: number[]; values: number[] };

// Builds a state dict that exercises the format (OrderedDict + _metadata, int64 num_batches_tracked,
// views sharing one storage, strided/offset/stride-0 views, tied weights, every dtype, empty and 0-d
// tensors), saves it plain, wrapped in a checkpoint, and as raw Parameters with pickle protocol 4,
// and prints what Python reads back.
const SAVE = (path: string, ckpt: string, params: string) => `
import json, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Linear(4, 2))
m[1].num_batches_tracked += 5
sd = m.state_dict()
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
sd['v.base'] = base
sd['v.transposed'] = base.t()
sd['v.offset'] = base[1:3, 2:5]
sd['v.stepped'] = torch.arange(10, dtype=torch.float64)[::3]
sd['v.expanded'] = torch.tensor([1.5, -2.0]).expand(3, 2)
sd['v.tied'] = sd['2.weight']
sd['d.half'] = torch.randn(3).half()
sd['d.bf16'] = torch.randn(2, 2).bfloat16()
sd['d.i32'] = torch.tensor([-7, 2**31 - 1], dtype=torch.int32)
sd['d.i16'] = torch.tensor([-32768, 5], dtype=torch.int16)
sd['d.i8'] = torch.tensor([-128, 127], dtype=torch.int8)
sd['d.u8'] = torch.tensor([0, 255], dtype=torch.uint8)
sd['d.bool'] = torch.tensor([[True, False]])
sd['d.i64'] = torch.tensor([-(2**40), 2**50])
sd['e.empty'] = torch.zeros(0, 5)
sd['e.scalar'] = torch.tensor(2.5)
assert hasattr(sd, '_metadata')
torch.save(sd, ${JSON.stringify(path)})
torch.save(dict(m.named_parameters()), ${JSON.stringify(params)}, pickle_protocol=4)
torch.save({'epoch': 3, 'state_dict': sd, 'optimizer': {'lr': 0.1, 'momentum': [0.9]}}, ${JSON.stringify(ckpt)})
def values(t):
    return t.reshape(-1).double().tolist() if t.is_floating_point() else t.reshape(-1).long().tolist()
print(json.dumps({k: {'dtype': str(t.dtype)[6:], 'shape': list(t.shape), 'values': values(t)} for k, t in sd.items()}))
`;

const DTYPES: Record<string, string> = { float: 'float32', double: 'float64', half: 'float16', long: 'int64', int: 'int32', short: 'int16' };

function check(got: Record<string, Tensor>, ref: Record<string, PyTensor>): void {
  assert.equal(Object.keys(got), Object.keys(ref));
  for (const [k, r] of Object.entries(ref)) {
    const t = got[k]!;
    assert.is(t.dtype, DTYPES[r.dtype] ?? r.dtype, k);
    assert.equal(t.shape, r.shape, k);
    assert.equal(Array.from(t.toArray() as ArrayLike<number | bigint>, Number), r.values, k);
  }
}

for (const [who, python] of [['torch 1.13 (Debian)', visionPython], ['torch 2.13 (.venv)', torchPython]] as const) {
  const tag = who.split(' ')[1];
  const path = join(dir, `sd-${tag}.pth`);
  const ckpt = join(dir, `ckpt-${tag}.pth`);
  const params = join(dir, `params-${tag}.pth`);
  let ref: Record<string, PyTensor>;

  test(`${who}: every tensor of a torch.save'd state dict matches Python's readout, in order`, () => {
    ref = py<Record<string, PyTensor>>(SAVE(path, ckpt, params), { python });
    assert.is(ref['1.num_batches_tracked']!.values[0], 5);
    const before = memory().tensors;
    const sd = io.loadPth(path);
    check(sd, ref);
    assert.is(sd['1.num_batches_tracked']!.dtype, 'int64');
    for (const t of Object.values(sd)) t.dispose();
    assert.is(memory().tensors, before);
  });

  test(`${who}: a checkpoint dict holding the state dict under 'state_dict' yields that state dict`, () => {
    check(io.loadPth(ckpt), ref);
  });

  test(`${who}: Parameters (_rebuild_parameter) pickled with protocol 4 load as plain tensors`, () => {
    const names = ['0.weight', '0.bias', '1.weight', '1.bias', '2.weight', '2.bias'];
    check(io.loadPth(params), Object.fromEntries(names.map((k) => [k, ref[k]!])));
  });
}

test('a checkpoint with no state dict inside is an error that names a non-tensor key and the accepted wrappers', () => {
  const path = join(dir, 'not-sd.pth');
  py(`import torch, json; torch.save({'epoch': 3, 'weights': {'w': torch.zeros(2)}}, ${JSON.stringify(path)}); print(json.dumps(1))`);
  assert.throws(() => io.loadPth(path), /key "epoch" holds a number, not a tensor.*'state_dict', 'model'/);
});

test('a legacy (pre-zip) torch.save file is an error that says how to re-save it', () => {
  const path = join(dir, 'legacy.pth');
  py(`import torch, json; torch.save({'w': torch.zeros(2)}, ${JSON.stringify(path)}, _use_new_zipfile_serialization=False); print(json.dumps(1))`);
  assert.throws(() => io.loadPth(path), /legacy \(pre-zip\) torch\.save format.*torch\.save\(torch\.load\('old\.pth', weights_only=True\), 'new\.pth'\)/);
});

test.run();
