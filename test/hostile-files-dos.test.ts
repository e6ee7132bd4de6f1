// Weights files as denial of service (issue 15, items 1-3 and 15): a small file must not make the
// loader allocate more than the file holds, exhaust the JS heap, or block forever. References:
// torch.load in Debian's torch 1.13 (/usr/bin/python3, the torchvision oracle), which made the
// files and reports what it shares; the files' own sizes; a FIFO made by mkfifo.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { io, memory } from '../lib/index.ts';
import { py, root, tmp, visionPython } from './helpers.ts';

const dir = tmp('hostile-dos-');
const MiB = 2 ** 20;

interface Made {
  files: Record<string, string>;
  // What torch 1.13 reads back: storages per file, and per tensor its shape, stride and sample values.
  torch: Record<string, { storages: number; storageBytes: number }>;
}
let made: Made;

test('fixtures are made by torch.save in torch 1.13 (the oracle)', () => {
  made = py<Made>(`
import json, os, zipfile, torch
d = ${JSON.stringify(dir)}
files, info = {}, {}
def save(name, obj):
    p = os.path.join(d, name + '.pth'); torch.save(obj, p); files[name] = p
    sd = torch.load(p)
    ptrs = {t.storage().data_ptr(): t.storage().nbytes() for t in sd.values()}
    info[name] = {'storages': len(ptrs), 'storageBytes': sum(ptrs.values())}
# Item 1: stride-0 views of one 4-byte storage, 2**28 elements each.
save('stride0', {'w': torch.full((1,), 1.5).expand(2**28)})
one = torch.full((1,), 2.5)
save('stride0x4', {f'w{i}': one.expand(2**28) for i in range(4)})
# Item 2: 200 one-element views of one 4 MiB storage.
big = torch.arange(2**20, dtype=torch.float32)
save('shared', {f'v{i}': big[i * 5000:i * 5000 + 1] for i in range(200)})
# Item 3: a pickle bomb, 40 MB of EMPTY_DICT, in a zip laid out as torch.save's.
p = os.path.join(d, 'bomb.pth'); files['bomb'] = p
with zipfile.ZipFile(p, 'w', zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', b'\\x80\\x02' + b'}' * 40_000_000 + b'.')
    z.writestr('archive/version', '3\\n')
print(json.dumps({'files': files, 'torch': info}))
`, { python: visionPython });
  assert.ok(statSync(made.files.stride0!).size < 2000, 'the stride-0 file is small');
  assert.equal(made.torch.stride0, { storages: 1, storageBytes: 4 });
  assert.equal(made.torch.shared, { storages: 1, storageBytes: 4 * MiB });
});

test('pth: a stride-0 view keeps its 4-byte storage, as torch.load does (item 1)', () => {
  const before = memory();
  const sd = io.loadPth(made.files.stride0!);
  const w = sd.w!;
  assert.equal(w.shape, [2 ** 28]);
  assert.equal(w.strides, [0]);
  const tail = w.narrow(0, 2 ** 28 - 3, 3);
  assert.equal(Array.from(tail.toArray() as Float32Array), [1.5, 1.5, 1.5]);
  tail.dispose();
  const after = memory();
  assert.is(after.storages - before.storages, made.torch.stride0!.storages);
  assert.is(after.bytes - before.bytes, made.torch.stride0!.storageBytes);
  w.dispose();
  const four = io.loadPth(made.files.stride0x4!);
  assert.is(Object.keys(four).length, 4);
  assert.is(memory().bytes - before.bytes, made.torch.stride0x4!.storageBytes);
  for (const t of Object.values(four)) t.dispose();
});

test('pth: 200 views of one storage share it in memory, as torch.load does (item 2)', () => {
  const before = memory();
  const sd = io.loadPth(made.files.shared!);
  const after = memory();
  assert.is(after.storages - before.storages, made.torch.shared!.storages);
  assert.is(after.bytes - before.bytes, made.torch.shared!.storageBytes);
  for (let i = 0; i < 200; i++) assert.equal(Array.from(sd[`v${i}`]!.toArray() as Float32Array), [i * 5000], `v${i}`);
  for (const t of Object.values(sd)) t.dispose();
  assert.is(memory().bytes, before.bytes);
});

test('pth: a 40 MB pickle of EMPTY_DICT opcodes is refused with a clear error, not a heap abort (item 3)', () => {
  // In a child process with the default heap: before the unpickler was bounded, this aborted.
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', `
    import { io } from ${JSON.stringify(join(root, 'lib', 'index.ts'))};
    try { io.loadPth(${JSON.stringify(made.files.bomb)}); console.log('LOADED'); }
    catch (e) { console.log('ERROR ' + e.message); }
  `], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.is(r.signal, null, `child killed by ${r.signal}: ${r.stderr.slice(-500)}`);
  assert.is(r.status, 0, r.stderr.slice(-2000));
  assert.match(r.stdout, /^ERROR loadPth: .*pickle: .*builds more than/m);
});

test('pth: pickles nested too deeply (MARK, 1,000,001 deep) are refused (item 3)', () => {
  const p = join(dir, 'marks.pth');
  py(`
import zipfile
with zipfile.ZipFile(${JSON.stringify(p)}, 'w', zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', b'\\x80\\x02' + b'(' * 1_000_001 + b'}.')
print(1)
`, { python: visionPython });
  assert.throws(() => io.loadPth(p), /pickle: MARKs nested more than 1000 deep/);
});

test('FIFOs and other non-regular files are refused without blocking (item 15)', () => {
  const fifo = join(dir, 'weights.fifo');
  execFileSync('mkfifo', [fifo]);
  // In a child process: before the fix, opening a FIFO for reading blocked forever.
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', `
    import { io } from ${JSON.stringify(join(root, 'lib', 'index.ts'))};
    import { native } from ${JSON.stringify(join(root, 'lib', 'native.ts'))};
    for (const [name, f] of [['loadPth', io.loadPth], ['loadSafetensors', io.loadSafetensors], ['readSafetensorsHeader', io.readSafetensorsHeader],
                             ['fromFile', (p) => native.fromFile(p, 0, [1], native.dtypes.uint8)]]) {
      for (const p of [${JSON.stringify(fifo)}, '/dev/zero', ${JSON.stringify(dir)}]) {
        try { f(p); console.log(name, 'LOADED', p); } catch (e) { console.log(name, 'ERROR', e.message); }
      }
    }
  `], { cwd: root, encoding: 'utf8', timeout: 30_000 });
  assert.is(r.signal, null, `child killed by ${r.signal} (blocked on the FIFO?)`);
  const lines = r.stdout.trim().split('\n');
  assert.is(lines.length, 12, r.stdout + r.stderr);
  for (const l of lines) assert.match(l, /ERROR .*is not a regular file/, l);
});

test.run();
