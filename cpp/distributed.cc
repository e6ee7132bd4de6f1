// c10d process groups: a TCPStore rendezvous and a Gloo process group; allreduce, broadcast, barrier;
// the gradient reducer of DistributedDataParallel (buckets allreduced from autograd hooks while
// backward still runs) and SyncBatchNorm's autograd function. Every collective waits with the
// group's timeout, so a dead peer is an Error, not a hang. Gloo trusts data_ptr() and numel(): a
// strided or stride-0 view is read or written out of bounds, and tensors of different sizes on two
// ranks abort the process from a transport thread. So every entry point checks its tensors locally,
// and the ranks agree on what they will send (agree() below) before any data moves.
// Compiled with Gloo where gloo's headers were found (RESNET_TS_GLOO) and with NCCL for a CUDA libtorch
// whose ProcessGroupNCCL and nccl.h headers were found (RESNET_TS_NCCL), see scripts/libtorch.mjs. NCCL
// moves only CUDA tensors: CPU tensors given to a collective (the agreement, JS-side metric sums) travel
// through the rank's device and back.
#include <ATen/ATen.h>

#include "tensor.h"

#ifndef RESNET_TS_GLOO
#define RESNET_TS_GLOO 0
#endif
#ifndef RESNET_TS_NCCL
#define RESNET_TS_NCCL 0
#endif

#if RESNET_TS_GLOO || RESNET_TS_NCCL
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#if RESNET_TS_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if RESNET_TS_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include "ddp-reducer.h"
#include "sync-batchnorm.h"

#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace rts {

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout{0};
  std::thread::id owner;  // the JS thread (main or Worker) that joined
  // Where a CPU tensor goes for a collective: itself (Gloo) or the rank's CUDA device (NCCL).
  std::optional<c10::Device> staging;
};
// One group per process, as c10d's default group: not thread-local, because autograd may run
// SyncBatchNorm's backward on a device thread. Only the thread that joined may use it from JS.
std::unique_ptr<Group> group;

// A process group used from a thread other than its owner would race with it (the reducers, the group).
void checkOwner(const Args& a) {
  if (group && group->owner != std::this_thread::get_id())
    throw Napi::Error::New(a.env(), std::string(a.fn()) + ": the process group belongs to another thread (the one that called distributed.init())");
}

Group& current(const Args& a) {
  if (!group) throw Napi::Error::New(a.env(), std::string(a.fn()) + ": no process group; call distributed.init() first");
  checkOwner(a);
  return *group;
}

// Runs a collective on one tensor, through the group's staging device when it is a CPU tensor on NCCL.
template <typename Op>
void onBackend(Group& g, at::Tensor& t, Op&& op) {
  const bool stage = g.staging && t.device() != *g.staging;
  std::vector<at::Tensor> one{stage ? t.to(*g.staging) : t};
  waitOrThrow(op(one), g.timeout);
  if (stage) t.copy_(one[0]);
}

// What one call is about to send, folded into a 64-bit hash (FNV-1a over 64-bit words), and the
// error its own arguments raised, if any.
struct Plan {
  uint64_t hash = 0xcbf29ce484222325ull;
  std::exception_ptr error;
  void mix(uint64_t v) { hash = (hash ^ v) * 0x100000001b3ull; }
  void mix(const at::Tensor& t) {
    mix(static_cast<uint64_t>(t.scalar_type()));
    mix(static_cast<uint64_t>(t.device().type()) << 8 | static_cast<uint8_t>(t.device().index()));
    mix(static_cast<uint64_t>(t.dim()));
    for (int64_t d = 0; d < t.dim(); d++) {
      mix(static_cast<uint64_t>(t.size(d)));
      mix(static_cast<uint64_t>(t.stride(d)));
    }
  }
};

// Runs the local part of a call (reading and checking arguments); an exception is kept for later,
// so that this rank still takes part in agree() and its peers are not left waiting.
template <typename F>
Plan plan(uint64_t kind, F&& readAndCheck) {
  Plan p;
  p.mix(kind);
  try {
    readAndCheck(p);
  } catch (...) {
    p.error = std::current_exception();
  }
  return p;
}

// Collectives write and read whole, dense memory: a stride-0 or strided view is refused here.
void checkCollective(const Args& a, const at::Tensor& t, const char* name, Plan& p) {
  if (!t.is_non_overlapping_and_dense())
    throw Napi::Error::New(a.env(), std::string(a.fn()) + ": argument '" + name + "' holds a tensor that is not dense (a stride-0, expanded or " +
                                        "strided view); collectives need whole tensors: pass .contiguous()");
  p.mix(t);
}

void wait(const Args& a, const c10::intrusive_ptr<c10d::Work>& work);

// Every rank contributes whether its arguments were valid and the hash of what it will send; one
// allreduce(MAX) of [invalid, h, -h] shows every rank whether all were valid (max invalid = 0) and
// equal (max h = min h). Only then does data move, so a mismatch is the same Error on every rank.
void agree(const Args& a, Group& g, const Plan& p) {
  const int64_t h = static_cast<int64_t>(p.hash >> 2);  // 62 bits, so -h cannot overflow
  at::Tensor v = at::empty({3}, at::kLong);
  auto* d = v.data_ptr<int64_t>();
  d[0] = p.error ? 1 : 0;
  d[1] = h;
  d[2] = -h;
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  o.timeout = g.timeout;
  onBackend(g, v, [&](std::vector<at::Tensor>& one) { return g.backend->allreduce(one, o); });
  if (p.error) std::rethrow_exception(p.error);
  if (d[0]) throw Napi::Error::New(a.env(), std::string(a.fn()) + ": another rank's arguments were invalid (its error names them); nothing was sent");
  if (d[1] != -d[2])
    throw Napi::Error::New(a.env(), std::string(a.fn()) + ": the ranks passed different tensors (number, dtype, device, shape or layout) " +
                                        "or options; nothing was sent");
}

c10d::ReduceOp reduceOp(const Args& a, size_t i) {
  std::string op = a.has(i) ? a.str(i, "op") : "sum";
  if (op == "sum") return c10d::ReduceOp::SUM;
  if (op == "max") return c10d::ReduceOp::MAX;
  if (op == "min") return c10d::ReduceOp::MIN;
  a.typeError("op", "'sum', 'max' or 'min'");
}

void wait(const Args& a, const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work->wait(current(a).timeout)) throw Napi::Error::New(a.env(), std::string(a.fn()) + ": collective did not complete");
}

std::map<int64_t, std::shared_ptr<Reducer>> reducers;
int64_t nextReducerId = 1;

Reducer& reducerArg(const Args& a) {
  checkOwner(a);
  int64_t id = a.integer(0, "reducer");
  auto it = reducers.find(id);
  if (it == reducers.end()) a.typeError("reducer", "a live reducer id (from distReducerCreate)");
  return *it->second;
}

}  // namespace

void allreduceSum(at::Tensor& t) {
  TORCH_CHECK(group, "distributed: the process group was destroyed");
  c10d::AllreduceOptions o;
  o.timeout = group->timeout;
  onBackend(*group, t, [&](std::vector<at::Tensor>& one) { return group->backend->allreduce(one, o); });
}


void registerDistributed(Napi::Env env, Napi::Object exports) {
  // distInit(backend, rank, worldSize, masterAddr, masterPort, timeoutMs, deviceIndex?): deviceIndex is
  // the rank's CUDA device for NCCL (the local rank), made current as torch.cuda.set_device does.
  def(env, exports, "distInit", [](Args& a) {
    std::string backend = a.str(0, "backend");
    int64_t rank = a.integer(1, "rank");
    int64_t world = a.integer(2, "worldSize");
    std::string addr = a.str(3, "masterAddr");
    int64_t port = a.integer(4, "masterPort");
    int64_t timeoutMs = a.integer(5, "timeoutMs");
    if (world < 1 || world > 65536) a.typeError("worldSize", "an integer in 1..65536");
    if (rank < 0 || rank >= world) a.typeError("rank", "an integer in 0..worldSize-1");
    if (port < 1 || port > 65535) a.typeError("masterPort", "a port number");
    if (timeoutMs < 1) a.typeError("timeoutMs", "positive");
    if (group) throw Napi::Error::New(a.env(), "distInit: a process group already exists; call destroy() first");
    const int64_t deviceIndex = a.has(6) ? a.integer(6, "deviceIndex") : 0;
    if (deviceIndex < 0) a.typeError("deviceIndex", "a CUDA device index >= 0");
    const std::string available = std::string(RESNET_TS_GLOO ? "gloo" : "") + (RESNET_TS_GLOO && RESNET_TS_NCCL ? ", " : "") + (RESNET_TS_NCCL ? "nccl" : "");
    if ((backend != "gloo" || !RESNET_TS_GLOO) && (backend != "nccl" || !RESNET_TS_NCCL))
      throw Napi::Error::New(a.env(), "distInit: backend '" + backend + "' is not available in this build (available: " + available +
                                          "; gloo needs libgloo-dev at build time, nccl a CUDA libtorch with NCCL headers)");
#if RESNET_TS_NCCL
    if (backend == "nccl" && deviceIndex >= c10::cuda::device_count())
      a.typeError("deviceIndex", "a CUDA device of this machine (it has " + std::to_string(c10::cuda::device_count()) + ")");
#endif
    auto g = std::make_unique<Group>();
    g->timeout = std::chrono::milliseconds(timeoutMs);
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<size_t>(world);
    so.timeout = g->timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(addr, so);
    g->store = c10::make_intrusive<c10d::PrefixStore>("resnet-ts/" + backend, tcp);
#if RESNET_TS_NCCL
    if (backend == "nccl") {
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(deviceIndex));
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = g->timeout;
      g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, static_cast<int>(rank), static_cast<int>(world), opts);
      g->staging = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(deviceIndex));
    }
#endif
#if RESNET_TS_GLOO
    if (backend == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, static_cast<int>(rank), static_cast<int>(world), opts);
    }
#endif
    g->owner = std::this_thread::get_id();
    group = std::move(g);
  });
  def(env, exports, "distRank", [](Args& a) { return static_cast<int64_t>(current(a).backend->getRank()); });
  def(env, exports, "distWorldSize", [](Args& a) { return static_cast<int64_t>(current(a).backend->getSize()); });
  def(env, exports, "distIsInitialized", [](Args& a) { return static_cast<bool>(group); });
  // distAllreduce(tensors, op): in place on each tensor (dense; the same tensors on every rank).
  def(env, exports, "distAllreduce", [](Args& a) {
    Group& g = current(a);
    std::vector<at::Tensor> ts;
    c10d::AllreduceOptions o;
    Plan p = plan(1, [&](Plan& p) {
      ts = a.tensors(0, "tensors");
      o.reduceOp = reduceOp(a, 1);
      p.mix(static_cast<uint64_t>(o.reduceOp.op_));
      for (auto& t : ts) checkCollective(a, t, "tensors", p);
    });
    agree(a, g, p);
    o.timeout = g.timeout;
    for (auto& t : ts) onBackend(g, t, [&](std::vector<at::Tensor>& one) { return g.backend->allreduce(one, o); });
  });
  // distBroadcast(tensors, root): in place on each tensor, from root.
  def(env, exports, "distBroadcast", [](Args& a) {
    Group& g = current(a);
    std::vector<at::Tensor> ts;
    c10d::BroadcastOptions o;
    Plan p = plan(2, [&](Plan& p) {
      ts = a.tensors(0, "tensors");
      int64_t root = a.integer(1, "root", 0);
      if (root < 0 || root >= g.backend->getSize()) a.typeError("root", "a rank of the group");
      o.rootRank = root;
      p.mix(static_cast<uint64_t>(root));
      for (auto& t : ts) checkCollective(a, t, "tensors", p);
    });
    agree(a, g, p);
    o.timeout = g.timeout;
    for (auto& t : ts) onBackend(g, t, [&](std::vector<at::Tensor>& one) { return g.backend->broadcast(one, o); });
  });
  def(env, exports, "distBarrier", [](Args& a) {
    c10d::BarrierOptions o;
    o.timeout = current(a).timeout;
    wait(a, current(a).backend->barrier(o));
  });
  def(env, exports, "distDestroy", [](Args& a) {
    checkOwner(a);
    reducers.clear();
    group.reset();
  });
  // distReducerCreate(params, bucketBytes) -> id: hooks the parameters' gradient accumulators.
  def(env, exports, "distReducerCreate", [](Args& a) {
    Group& g = current(a);
    std::vector<at::Tensor> params;
    double bucketBytes = 0;
    Plan p = plan(3, [&](Plan& p) {
      params = a.tensors(0, "params");
      bucketBytes = a.num(1, "bucketBytes");
      if (!(bucketBytes >= 1)) a.typeError("bucketBytes", "a number >= 1");
      if (params.empty()) a.typeError("params", "a non-empty array of tensors");
      p.mix(static_cast<uint64_t>(bucketBytes));
      for (auto& t : params) {
        if (!t.requires_grad() || !t.is_leaf()) a.typeError("params", "leaf tensors that require grad");
        p.mix(t);
      }
    });
    // The same parameters on every rank, so the buckets, and every later allreduce, match in size.
    agree(a, g, p);
    auto r = std::make_shared<Reducer>();
    r->backend = g.backend;
    r->timeout = g.timeout;
    r->params = params;
    r->bucketOf.assign(params.size(), 0);
    // libtorch's own bucketing, as torch's DDP calls it: buckets over the parameters in registration
    // order (the first capped at 1 MiB, the rest at bucketBytes; one dtype and device per bucket),
    // then reversed, so the first bucket holds the last parameters, whose gradients backward makes first.
    const auto cap = static_cast<size_t>(bucketBytes);
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(params, {std::min<size_t>(cap, 1 << 20), cap});
    r->buckets.assign(buckets.rbegin(), buckets.rend());
    for (size_t b = 0; b < r->buckets.size(); b++)
      for (size_t i : r->buckets[b]) r->bucketOf[i] = b;
    std::weak_ptr<Reducer> weak = r;
    for (size_t i = 0; i < params.size(); i++) {
      AccPtr acc = torch::autograd::impl::grad_accumulator(params[i]);
      r->hookKeys.push_back(acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [weak, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
            if (auto rr = weak.lock()) rr->onGradReady(i);
            return outputs;
          })));
      r->accs.push_back(std::move(acc));
    }
    r->reset();
    int64_t id = nextReducerId++;
    reducers[id] = std::move(r);
    return id;
  });
  def(env, exports, "distReducerPrepare", [](Args& a) { reducerArg(a).prepare(); });
  // distReducerFinish(id) -> buckets whose allreduce started during backward.
  def(env, exports, "distReducerFinish", [](Args& a) { return reducerArg(a).finish(); });
  def(env, exports, "distReducerBuckets", [](Args& a) {
    std::vector<int64_t> sizes;
    for (auto& b : reducerArg(a).buckets) sizes.push_back(static_cast<int64_t>(b.size()));
    return sizes;
  });
  // distReducerDestroy(id): removes the hooks; a reducer already gone (destroyed, or dropped by distDestroy) is a no-op.
  def(env, exports, "distReducerDestroy", [](Args& a) {
    checkOwner(a);
    reducers.erase(a.integer(0, "reducer"));
  });
  // distSyncBatchNorm(x, weight?, bias?, runningMean?, runningVar?, eps, momentum): training-mode BN over all ranks.
  def(env, exports, "distSyncBatchNorm", [](Args& a) {
    Group& g = current(a);
    at::Tensor x;
    std::optional<at::Tensor> w, b, rm, rv;
    double eps = 0, momentum = 0;
    Plan p = plan(4, [&](Plan& p) {
      x = a.tensor(0, "input");
      w = a.optTensor(1, "weight");
      b = a.optTensor(2, "bias");
      rm = a.optTensor(3, "runningMean");
      rv = a.optTensor(4, "runningVar");
      eps = a.num(5, "eps");
      momentum = a.num(6, "momentum");
      if (x.dim() < 2 || x.numel() == 0) a.typeError("input", "a non-empty tensor of shape (N, C, ...)");
      if (!at::isFloatingType(x.scalar_type())) a.typeError("input", "a floating-point tensor");
      const int64_t C = x.size(1);
      auto perChannel = [&](const std::optional<at::Tensor>& t, const char* name) {
        if (t && (t->dim() != 1 || t->size(0) != C || !at::isFloatingType(t->scalar_type()) || t->device() != x.device()))
          a.typeError(name, "a floating-point tensor of shape [" + std::to_string(C) + "] on the input's device");
      };
      perChannel(w, "weight");
      perChannel(b, "bias");
      perChannel(rm, "runningMean");
      perChannel(rv, "runningVar");
      if (w.has_value() != b.has_value()) a.typeError("bias", "given exactly when weight is");
      if (rm.has_value() != rv.has_value()) a.typeError("runningVar", "given exactly when runningMean is");
      if (!(eps > 0)) a.typeError("eps", "a positive number");
      if (!(momentum >= 0 && momentum <= 1)) a.typeError("momentum", "a number in [0, 1]");
      // The statistics' allreduces (forward and backward) are C+1, C and 2C floats: C must agree.
      p.mix(static_cast<uint64_t>(C));
    });
    agree(a, g, p);
    return SyncBatchNormFn::apply(x, w, b, rm, rv, eps, momentum);
  });
}

}  // namespace rts

#else

namespace rts {

void registerDistributed(Napi::Env env, Napi::Object exports) {
  for (const char* name : {"distInit", "distRank", "distWorldSize", "distAllreduce", "distBroadcast", "distBarrier", "distDestroy",
                           "distReducerCreate", "distReducerPrepare", "distReducerFinish", "distReducerBuckets", "distReducerDestroy",
                           "distSyncBatchNorm"}) {
    def(env, exports, name, [](Args& a) -> Napi::Value {
      throw Napi::Error::New(a.env(), std::string(a.fn()) + ": resnet-ts was built without a c10d backend (gloo: install libgloo-dev and " +
                                          "rebuild; nccl: build against a CUDA libtorch with NCCL headers)");
    });
  }
  def(env, exports, "distIsInitialized", [](Args& a) { return false; });
}

}  // namespace rts

#endif
