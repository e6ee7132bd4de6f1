// npm run bench's rounds: every side is set up once and the sides take turns, one at a time, the order rotating
// from round to round (the PyTorch peer is a Python process that stays up for the case and reports its own turn's
// span). Run on the per-op case, the one that needs no weights; times are not judged, only who ran when.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCpuinfo } from '../lib/cpu.ts';
import { hasTorchPython, root, tmp } from './helpers.ts';

interface BenchJson {
  rows: Row[];
  emulated: string | null;
  pytorchCpuCapability: string | null;
  kernels: { float32: string } | null;
  cpu: { description: string; avx512: boolean; onednnBf16: boolean };
}

interface Row {
  case: string;
  samples: { ours: number[][]; pytorch: number[][]; onnxruntime: number[][] | null };
  roundRatios: { pytorch: number[]; onnxruntime: number[] | null };
  bestRatios: { pytorch: number; onnxruntime: number | null };
  turns: { side: string; round: number; span: [number, number] }[];
  pytorchPeakBytes: number;
}

// This machine's own CPU, read past the shim's RESNET_TS_CPUID_MASK (which cpuInfo() follows).
const real = parseCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'));

// The bench on this machine's own CPU, even where these tests run under the shim themselves.
const { LD_PRELOAD: _preload, RESNET_TS_CPUID_MASK: _mask, ...env } = process.env;

function bench(args: string[]): { status: number | null; stderr: string; json: () => BenchJson } {
  const out = join(tmp('bench-'), 'bench.json');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'bench.ts'), '--micro', '--threads', '1', '--output', out, ...args], {
    cwd: root, encoding: 'utf8', timeout: 240_000, env,
  });
  return { status: r.status, stderr: r.stderr, json: () => JSON.parse(readFileSync(out, 'utf8')) as BenchJson };
}

let plain: BenchJson;

test('bench --micro: the sides take turns round by round, never overlapping, each round led by the next side', () => {
  if (!hasTorchPython) throw new Error('the .venv torch is needed (bash scripts/setup.sh)');
  const r = bench(['--rounds', '3']);
  assert.is(r.status, 0, r.stderr);
  plain = r.json();
  assert.is(plain.emulated, null);
  const [row] = plain.rows;
  assert.ok(row);
  for (const side of ['ours', 'pytorch'] as const) {
    assert.is(row.samples[side].length, 3, side);
    for (const round of row.samples[side]) {
      assert.is(round.length, 5, side);
      assert.ok(round.every((v) => v > 0 && v < 1e6), `${side}: ${round}`);
    }
  }
  assert.is(row.samples.onnxruntime, null);
  assert.is(row.roundRatios.pytorch.length, 3);
  assert.is(row.roundRatios.onnxruntime, null);
  // The fastest-iteration ratio, from the samples themselves.
  const fastest = (side: 'ours' | 'pytorch'): number => Math.min(...row.samples[side].flat());
  assert.ok(Math.abs(row.bestRatios.pytorch - fastest('ours') / fastest('pytorch')) < 0.01, JSON.stringify(row.bestRatios));
  assert.is(row.bestRatios.onnxruntime, null);
  assert.equal(row.turns.map((t) => `${t.round}:${t.side}`), ['0:ours', '0:pytorch', '1:pytorch', '1:ours', '2:ours', '2:pytorch']);
  for (let i = 1; i < row.turns.length; i++) {
    const [a, b] = [row.turns[i - 1]!, row.turns[i]!];
    // Each side read its own clock (the system's); the bench leaves 100 ms between turns, so 5 ms of slack covers them.
    assert.ok(a.span[0] < a.span[1], JSON.stringify(a));
    assert.ok(a.span[1] < b.span[0] + 5, `turn ${i - 1} (${a.side}) ended at ${a.span[1]}, turn ${i} (${b.side}) began at ${b.span[0]}`);
  }
  assert.ok(row.pytorchPeakBytes >= 0);
});

// PyTorch's own CPU detection (aten's kernel capability) and the kernel the system oneDNN picks are the witnesses
// that every side saw an AVX2-only CPU; without the flag, on an AVX-512 CPU, both say AVX-512.
test('bench --emulate-avx2: PyTorch and oneDNN take their AVX2 kernels; where cpuid cannot be trapped, a usage error', () => {
  const r = bench(['--rounds', '1', '--emulate-avx2']);
  if (!real.cpuidFault) {
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /--emulate-avx2 needs CPUID faulting/);
    return;
  }
  assert.is(r.status, 0, r.stderr);
  const e = r.json();
  assert.is(e.emulated, 'avx2');
  assert.is(e.pytorchCpuCapability, 'AVX2');
  if (e.kernels) assert.match(e.kernels.float32, /avx2/);
  // Our own reading of the CPU (lib/cpu.ts, /proc/cpuinfo) follows what cpuid now says.
  assert.match(e.cpu.description, /, AVX2, bf16: no AVX512-BF16 or AMX/);
  assert.is(e.cpu.onednnBf16, false);
  if (real.avx512) {
    assert.is(plain.pytorchCpuCapability, 'AVX512');
    if (plain.kernels) assert.match(plain.kernels.float32, /avx512/);
  }
});

test.run();
