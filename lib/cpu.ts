// What this CPU offers for inference and mixed precision, read from /proc/cpuinfo (no addon needed):
// used by the bench header, `resnet-ts doctor`, and to say whether `--amp bf16` pays here.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/** The CPU's model, core count and the instruction-set extensions that decide fp32/bf16 speed. */
export interface CpuInfo {
  /** `model name` of /proc/cpuinfo (as lscpu prints it), or Node's cpus()[0].model. */
  model: string;
  /** Logical CPUs this process sees. */
  cores: number;
  /** Whether the flags were read (Linux /proc/cpuinfo); elsewhere every flag below is false. */
  flagsKnown: boolean;
  avx2: boolean;
  avx512: boolean;
  /** AVX512_BF16: bf16 dot products in AVX-512 registers (Cooper Lake, Zen 4 and later). */
  avx512Bf16: boolean;
  /** AMX-BF16: bf16 tile matrix multiply (Sapphire Rapids and later), the big bf16 win. */
  amxBf16: boolean;
  /**
   * Whether libtorch's oneDNN takes bf16 convolutions here (AVX-512 BW, VL and DQ, or Arm's bf16: libtorch's
   * `mkldnn_bf16_device_check`). Without it libtorch falls back to an im2col bf16 convolution about 10x slower
   * than fp32, so F.conv2d computes bf16 convolutions in fp32 on bf16-rounded operands instead.
   */
  onednnBf16: boolean;
  /** How bf16 matrix work runs here: 'amx', 'avx512-bf16', or 'emulated' (converted to fp32, slower than fp32). */
  bf16: 'amx' | 'avx512-bf16' | 'emulated';
  /** Linux can make cpuid trap here (flag cpuid_fault), which `bench --emulate-avx2` needs. */
  cpuidFault: boolean;
}

/** Parses the text of /proc/cpuinfo (exported for tests). */
export function parseCpuinfo(text: string, cores = cpus().length): CpuInfo {
  const model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown CPU';
  const line = /^(?:flags|Features)\s*:\s*(.+)$/m.exec(text)?.[1];
  const flags = new Set(line ? line.trim().split(/\s+/) : []);
  const amxBf16 = flags.has('amx_bf16');
  const avx512Bf16 = flags.has('avx512_bf16');
  return {
    model,
    cores,
    flagsKnown: line !== undefined,
    avx2: flags.has('avx2'),
    avx512: flags.has('avx512f'),
    avx512Bf16,
    amxBf16,
    onednnBf16: (flags.has('avx512bw') && flags.has('avx512vl') && flags.has('avx512dq')) || flags.has('bf16'),
    bf16: amxBf16 ? 'amx' : avx512Bf16 ? 'avx512-bf16' : 'emulated',
    cpuidFault: flags.has('cpuid_fault'),
  };
}

let cached: CpuInfo | undefined;

/** This machine's CPU (read once). */
export function cpuInfo(): CpuInfo {
  if (cached) return cached;
  let text = '';
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: model from Node, flags unknown
  }
  // Under `bench --emulate-avx2` (scripts/cpuid-mask.c) cpuid hides AVX-512 and AMX from every library; the flags
  // read here follow it, so bf16 and kernel choices are the ones an AVX2-only CPU gets.
  if (process.env.RESNET_TS_CPUID_MASK === 'avx2') text = text.replace(/^(flags\s*:.*)$/gm, (l) => l.replace(/ (avx512\w*|amx\w*)(?= |$)/g, ''));
  cached = parseCpuinfo(text);
  return cached;
}

/** Whether bf16 is expected to beat fp32 here (the CPU reports AVX512-BF16 or AMX-BF16). */
export function bf16Pays(info: CpuInfo = cpuInfo()): boolean {
  return info.bf16 !== 'emulated';
}

/** One line for headers and doctor, e.g. "AMD EPYC, 2 cores, AVX-512, bf16: AVX512-BF16 (no AMX)". */
export function describeCpu(info: CpuInfo = cpuInfo()): string {
  if (!info.flagsKnown) return `${info.model}, ${info.cores} cores (instruction-set flags unknown on this OS)`;
  const isa = info.avx512 ? 'AVX-512' : info.avx2 ? 'AVX2' : 'no AVX2';
  const bf16 = info.bf16 === 'amx'
    ? 'bf16: AMX-BF16'
    : info.bf16 === 'avx512-bf16'
      ? 'bf16: AVX512-BF16 (no AMX)'
      : 'bf16: no AVX512-BF16 or AMX, so --amp bf16 is emulated and slower than fp32';
  return `${info.model}, ${info.cores} cores, ${isa}, ${bf16}`;
}
