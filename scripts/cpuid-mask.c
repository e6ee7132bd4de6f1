/*
 * `resnet-ts bench --emulate-avx2`: an LD_PRELOAD shim that hides AVX-512 and AMX from a process, so that every side
 * of the bench (ours, PyTorch, onnxruntime-node) takes the code paths it takes on an AVX2-only CPU. Not part of the
 * addon; the bench compiles it with cc on first use.
 *
 * Linux's CPUID faulting (arch_prctl(ARCH_SET_CPUID, 0); /proc/cpuinfo flag cpuid_fault) makes every cpuid
 * instruction of the process, its threads and forks raise SIGSEGV (execve resets it; the preload sets it again in
 * each new program). The constructor records the real answers first, clears the AVX-512, AVX512-BF16 and AMX bits of
 * leaf 7, and answers each trapped cpuid from that table. oneDNN, MLAS, aten and MKL read cpuid directly (not
 * /proc/cpuinfo) to pick their kernels. The program's own SIGSEGV handlers (Node's, V8's) are kept through an
 * interposed sigaction and get every fault that is not a cpuid (a handler set through glibc's signal(), which calls
 * its internal sigaction, would replace this one; none of the three sides does that). Libraries that ran cpuid
 * before this constructor (glibc's string functions) keep what they chose.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define LEAVES 0x40
#define SUBLEAVES 64
/* Leaves 0x0-0x3f, 0x40000000-0x4000003f (a hypervisor's) and 0x80000000-0x8000003f; any other answers zeros. */
static uint32_t table[3][LEAVES][SUBLEAVES][4];
static const uint32_t base[3] = {0, 0x40000000u, 0x80000000u};
static uint32_t top[3];

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction;
/* The SIGSEGV action the program asked for; ours stays installed and passes it every other fault. */
static struct sigaction program_action;

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  if (sig != SIGSEGV) return real_sigaction(sig, act, old);
  if (old) *old = program_action;
  if (act) program_action = *act;
  return 0;
}

static void on_segv(int sig, siginfo_t *info, void *context) {
  ucontext_t *uc = context;
  greg_t *r = uc->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)r[REG_RIP];
  if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
    uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX], out[4] = {0, 0, 0, 0};
    if (sub >= SUBLEAVES) sub = SUBLEAVES - 1;
    for (int t = 0; t < 3; t++)
      if (leaf >= base[t] && leaf - base[t] < LEAVES && leaf <= top[t]) memcpy(out, table[t][leaf - base[t]][sub], sizeof out);
    r[REG_RAX] = out[0];
    r[REG_RBX] = out[1];
    r[REG_RCX] = out[2];
    r[REG_RDX] = out[3];
    r[REG_RIP] += 2;
    return;
  }
  if ((program_action.sa_flags & SA_SIGINFO) && program_action.sa_sigaction) return program_action.sa_sigaction(sig, info, context);
  if (program_action.sa_handler != SIG_DFL && program_action.sa_handler != SIG_IGN) return program_action.sa_handler(sig);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  real_sigaction(sig, &dfl, NULL);
  /* A fault: the instruction runs again and ends the process as it would have. A sent signal (kill, raise): again. */
  if (info->si_code <= 0) raise(sig);
}

__attribute__((constructor)) static void hide_avx512(void) {
  for (int t = 0; t < 3; t++) {
    uint32_t a, b, c, d;
    __cpuid_count(base[t], 0, a, b, c, d);
    /* The hypervisor range exists only under one (CPUID.1:ECX bit 31); elsewhere its answers are the basic leaves'. */
    top[t] = t == 1 && !(table[0][1][0][2] & (1u << 31)) ? 0 : a;
    for (uint32_t l = 0; l < LEAVES && base[t] + l <= top[t]; l++)
      for (uint32_t s = 0; s < SUBLEAVES; s++)
        __cpuid_count(base[t] + l, s, table[t][l][s][0], table[t][l][s][1], table[t][l][s][2], table[t][l][s][3]);
  }
  uint32_t (*basic)[SUBLEAVES][4] = table[0];
  if (top[0] >= 7) {
    /* EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL */
    basic[7][0][1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
    /* ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
    basic[7][0][2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
    /* EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
    basic[7][0][3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    /* leaf 7.1 EAX: AVX512-BF16 */
    basic[7][1][0] &= ~(1u << 5);
  }
  real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  program_action.sa_handler = SIG_DFL;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  if (real_sigaction(SIGSEGV, &sa, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
    perror("cpuid-mask: cannot trap cpuid (arch_prctl ARCH_SET_CPUID needs Linux 4.12+ and a CPU with CPUID faulting)");
    _exit(3);
  }
}
