// Mutation fuzz of weights files (issue 15): real torch.save and safetensors files, written by the
// torchvision oracle (Debian's torch 1.13 + torchvision 0.14), mutated by a seeded generator into
// 12,000 files (test/fuzz-weights.child.ts): bit flips, byte sets, truncations, splices, zip and
// safetensors length fields, safetensors JSON fields, and pickle opcode edits re-zipped with valid
// CRCs. None may crash the process, none may hang, and the peak RSS growth while loading any one must
// stay below 4 x its size + 64 MiB. References: the base files' makers, the process's survival, and
// the kernel's own peak-RSS counter.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { py, root, tmp, visionPython } from './helpers.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20240611);
const FILES = 12_000;

interface Result {
  files: number; loaded: number; refused: number; kinds: Record<string, number>; violations: string[]; nonErrors: string[];
  seconds: number; maxMs: number; worstRatio: number; peakMode: string;
}

test(`fuzz: ${FILES} mutants of torchvision-made .pth and .safetensors files load or fail cleanly within their memory bound (seed ${SEED})`, () => {
  const dir = tmp('resnet-ts-fuzzw-');
  const bases = join(dir, 'bases');
  mkdirSync(bases);
  // The oracle's own safetensors writer (test/reference/torchvision_oracle.py, without running its main()).
  const oracle = join(root, 'test', 'reference', 'torchvision_oracle.py');
  const made = py<string[]>(`
import json, os, torch, torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1
src = open(${JSON.stringify(oracle)}).read().rsplit('\\nmain()', 1)[0]
ns = {}
exec(compile(src, 'torchvision_oracle.py', 'exec'), ns)
d = ${JSON.stringify(bases)}
torch.manual_seed(0)
basic = BasicBlock(4, 4).state_dict()
down = torch.nn.Sequential(conv1x1(8, 8, 2), torch.nn.BatchNorm2d(8))
bottleneck = Bottleneck(8, 2, stride=2, downsample=down).state_dict()
w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
views = {'w': w, 'wt': w.t(), 'row': w[1], 'expanded': torch.tensor([1.5]).expand(3, 2), 'half': torch.randn(5).half(), 'n': torch.tensor(7)}
torch.save(basic, os.path.join(d, 'basic.pth'))
torch.save(bottleneck, os.path.join(d, 'bottleneck.pth'))
torch.save({'epoch': 3, 'state_dict': basic, 'optimizer': {'lr': 0.1}}, os.path.join(d, 'checkpoint.pth'))
torch.save(views, os.path.join(d, 'views-p4.pth'), pickle_protocol=4)
ns['save_safetensors'](os.path.join(d, 'basic.safetensors'), basic, {'format': 'pt'})
ns['save_safetensors'](os.path.join(d, 'bottleneck.safetensors'), bottleneck)
ns['save_safetensors'](os.path.join(d, 'mixed.safetensors'), {'w': w, 'h': torch.randn(3).half(), 'n': torch.tensor([5, 6])})
print(json.dumps(sorted(os.listdir(d))))
`, { python: visionPython });
  assert.is(made.length, 7);
  const logFile = join(dir, 'files.log');
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'test', 'fuzz-weights.child.ts'), String(SEED), String(FILES), bases, logFile], {
    cwd: dir, encoding: 'utf8', timeout: 240_000, maxBuffer: 1 << 26, env: { ...process.env, FORCE_COLOR: '0' },
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('FUZZW-RESULT '));
  if (r.status !== 0 || r.signal || !line) {
    const last = existsSync(logFile) ? readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-2).join('\n  ') : '(no log)';
    assert.unreachable(`fuzz child died or hung (status ${r.status}, signal ${r.signal}${r.error ? `, ${r.error.message}` : ''}) at:\n  ${last}\n${r.stderr.slice(-3000)}`);
  }
  const res = JSON.parse(line!.slice('FUZZW-RESULT '.length)) as Result;
  console.log(`  fuzz-weights: ${res.files} files in ${res.seconds.toFixed(1)} s (${res.loaded} loaded, ${res.refused} refused); ` +
    `slowest load ${res.maxMs.toFixed(0)} ms; worst peak RSS growth ${(100 * res.worstRatio).toFixed(1)} % of the bound (${res.peakMode})`);
  assert.equal(res.violations, [], 'peak RSS growth above 4 x file size + 64 MiB');
  assert.equal(res.nonErrors, [], 'everything thrown must be an Error');
  assert.ok(res.files >= 10_000);
  for (const kind of ['bit-flips', 'truncation', 'splice-insert', 'zip-field', 'safetensors-header-length', 'safetensors-json-shape',
    'pickle-replace-opcode', 'pickle-delete-opcode', 'pickle-duplicate-opcodes', 'pickle-edit-argument', 'pickle-widen-int', 'pickle-edit-length', 'pickle-insert-opcodes'])
    assert.ok((res.kinds[kind] ?? 0) >= 100, `only ${res.kinds[kind] ?? 0} mutants of kind ${kind}`);
  assert.ok(res.loaded > 100 && res.refused > res.files / 2, `${res.loaded} loaded, ${res.refused} refused`);
});

test.run();
