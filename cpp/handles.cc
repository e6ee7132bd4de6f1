// The per-environment table of tensor handles. The addon is context-aware: the main thread and
// every Worker have their own JS environment, and each gets its own table, created when the addon
// loads there and freed (its tensors with it) when that environment is torn down.
//
// A handle is a 128-bit JS BigInt, never a pointer: the high word is the environment's tag (random,
// unique in the process), the low word a random nonce (36 bits, new each time a slot is filled)
// and the slot (28 bits). So a disposed or stale id is detected; a forged id must guess the slot's
// nonce (and, without a handle to copy it from, the tag) to alias a live tensor; and a handle taken
// to another thread is named as such, never read as whatever that thread keeps in the same slot. Making one needs no JS constructor call and no N-API
// finalizer reference (the two costs that dominated a tiny op); the GC backstop is a
// FinalizationRegistry in lib/tensor.ts.
#include <deque>
#include <mutex>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "tensor.h"

namespace rts {

namespace {

struct Slot {
  at::Tensor t;
  int64_t reported = 0;  // CPU bytes this handle reported to V8 as external memory
  uint64_t nonce = 0;
  bool live = false;
};

struct State {
  napi_env env;
  uint64_t tag;
  uint64_t rng;  // splitmix64 state for the nonces
  // A deque keeps references to slots valid while new ones are added during a call.
  std::deque<Slot> slots;
  // Freed slots are reused first-in first-out, so a just-disposed slot is not the next one filled.
  std::deque<uint32_t> freeSlots;
  int64_t liveHandles = 0;
  // External-memory changes not yet told to V8; sent in batches, as each call costs more than a tiny op.
  int64_t unreported = 0;

  uint64_t next() {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

// Every tag ever issued in this process, and whether its environment is still alive: a handle of a
// Worker that has exited is still recognised (and refused) as another thread's.
std::mutex tagsMu;
std::unordered_map<uint64_t, bool> tags;

// One environment per thread in Node (the main thread, each Worker's own thread), so the table is
// found through a thread_local pointer: one TLS read per call, no N-API instance-data lookup.
thread_local State* statePtr = nullptr;

State& state() {
  if (!statePtr) throw std::logic_error("resnet-ts: tensor table used on a thread with no JS environment");
  return *statePtr;
}

constexpr uint32_t kSlotBits = 28;
constexpr uint32_t kMaxSlots = 1u << kSlotBits;
constexpr uint64_t kNonceMask = (1ull << (64 - kSlotBits)) - 1;

struct Id {
  uint64_t tag;
  uint64_t low;
  uint32_t slot() const { return static_cast<uint32_t>(low & (kMaxSlots - 1)); }
  uint64_t nonce() const { return low >> kSlotBits; }
};

// The two words of v when it is a non-negative two-word BigInt (the shape of every handle).
// (napi_bigint_expected, without a JS exception, for anything that is not a BigInt.)
bool idOf(napi_env env, napi_value v, Id* out) {
  int sign = 0;
  size_t count = 2;
  uint64_t words[2] = {0, 0};
  if (napi_get_value_bigint_words(env, v, &sign, &count, words) != napi_ok || sign != 0 || count != 2) return false;
  *out = {words[1], words[0]};
  return true;
}

// The slot v names in this environment's table (live or not), or nullptr.
Slot* slotOf(State& st, napi_env env, napi_value v, Id* idOut = nullptr) {
  Id id;
  if (!idOf(env, v, &id) || id.tag != st.tag || id.slot() >= st.slots.size()) return nullptr;
  if (idOut) *idOut = id;
  return &st.slots[id.slot()];
}

bool isLive(const Slot& s, const Id& id) { return s.live && s.nonce == id.nonce(); }

// Frees an environment's table when the environment is torn down (a Worker exits, the process ends).
void destroyState(void* arg) {
  auto* st = static_cast<State*>(arg);
  {
    std::lock_guard<std::mutex> lock(tagsMu);
    tags[st->tag] = false;
  }
  if (statePtr == st) statePtr = nullptr;
  delete st;  // frees the environment's tensors
  emptyCpuCache();
}

}  // namespace

void initHandles(Napi::Env env) {
  if (statePtr && statePtr->env == static_cast<napi_env>(env)) return;  // the addon loaded twice into one environment
  std::random_device rd;
  auto* st = new State();
  st->env = env;
  st->rng = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  {
    std::lock_guard<std::mutex> lock(tagsMu);
    do {
      st->tag = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ st->next();
    } while (st->tag == 0 || tags.count(st->tag));
    tags[st->tag] = true;
  }
  statePtr = st;
  NAPI_THROW_IF_FAILED_VOID(env, napi_add_env_cleanup_hook(env, destroyState, st));
}

// Storages are counted here, when asked, rather than tracked on every op: memory() is rare, ops are not.
MemoryStats memoryStats() {
  State& st = state();
  std::unordered_set<const void*> seen;
  int64_t bytes = 0;
  for (const Slot& s : st.slots) {
    if (!s.live || !s.t.has_storage()) continue;
    if (seen.insert(s.t.storage().unsafeGetStorageImpl()).second) bytes += static_cast<int64_t>(s.t.storage().nbytes());
  }
  return {st.liveHandles, static_cast<int64_t>(seen.size()), bytes};
}

namespace {

// Reports a change of external memory to V8 once the batch exceeds 1 MiB.
void reportExternal(napi_env env, State& st, int64_t delta) {
  st.unreported += delta;
  if (st.unreported > (1 << 20) || st.unreported < -(1 << 20)) {
    napi_adjust_external_memory(env, st.unreported, nullptr);
    st.unreported = 0;
  }
}

}  // namespace

Napi::Value TensorHandle::Wrap(Napi::Env env, at::Tensor t) {
  if (!t.defined()) throw Napi::Error::New(env, "internal: undefined tensor result");
  State& st = state();
  uint32_t idx;
  if (!st.freeSlots.empty()) {
    idx = st.freeSlots.front();
    st.freeSlots.pop_front();
  } else {
    if (st.slots.size() >= kMaxSlots) throw Napi::Error::New(env, "too many live tensors (2^28); dispose() them or use tidy()");
    idx = static_cast<uint32_t>(st.slots.size());
    st.slots.emplace_back();
  }
  Slot& s = st.slots[idx];
  uint64_t nonce;
  do {
    nonce = st.next() & kNonceMask;
  } while (nonce == s.nonce);
  const uint64_t words[2] = {(nonce << kSlotBits) | idx, st.tag};
  napi_value out;
  napi_status status = napi_create_bigint_words(env, 0, 2, words, &out);
  if (status != napi_ok) {
    st.freeSlots.push_back(idx);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  }
  s.nonce = nonce;
  s.t = std::move(t);
  s.live = true;
  st.liveHandles++;
  // Only a storage this handle alone holds is reported, so views do not count their base again.
  s.reported = s.t.has_storage() && s.t.is_cpu() && s.t.storage().use_count() == 1 ? static_cast<int64_t>(s.t.storage().nbytes()) : 0;
  if (s.reported) reportExternal(env, st, s.reported);
  return Napi::Value(env, out);
}

bool TensorHandle::Is(Napi::Value v) { return slotOf(state(), v.Env(), v) != nullptr; }

bool TensorHandle::IsForeign(Napi::Value v) {
  Id id;
  if (!idOf(v.Env(), v, &id) || id.tag == state().tag) return false;
  std::lock_guard<std::mutex> lock(tagsMu);
  return tags.count(id.tag) > 0;
}

at::Tensor* TensorHandle::Find(Napi::Value v, bool* isHandle) {
  Id id;
  Slot* s = slotOf(state(), v.Env(), v, &id);
  if (isHandle) *isHandle = s != nullptr;
  return s && isLive(*s, id) ? &s->t : nullptr;
}

void TensorHandle::Release(Napi::Value v) {
  State& st = state();
  Id id;
  Slot* s = slotOf(st, v.Env(), v, &id);
  if (!s || !isLive(*s, id)) return;
  s->live = false;
  st.liveHandles--;
  if (s->reported) reportExternal(v.Env(), st, -s->reported);
  s->t = at::Tensor();
  st.freeSlots.push_back(id.slot());
}

}  // namespace rts
