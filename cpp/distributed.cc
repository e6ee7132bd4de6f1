// c10d process groups: a TCPStore rendezvous and a Gloo process group; allreduce, broadcast, barrier.
// Every collective waits with the group's timeout, so a dead peer is an Error, not a hang.
// Compiled with Gloo only where gloo's headers were found (RESNET_TS_GLOO, see scripts/libtorch.mjs).
#include <ATen/ATen.h>

#include "tensor.h"

#if RESNET_TS_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>

namespace rts {

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout{0};
};
thread_local std::unique_ptr<Group> group;

Group& current(const Args& a) {
  if (!group) throw Napi::Error::New(a.env(), std::string(a.fn()) + ": no process group; call distributed.init() first");
  return *group;
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

}  // namespace

void registerDistributed(Napi::Env env, Napi::Object exports) {
  // distInit(backend, rank, worldSize, masterAddr, masterPort, timeoutMs)
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
    if (backend != "gloo")
      throw Napi::Error::New(a.env(), "distInit: backend '" + backend + "' is not available in this build (gloo is; nccl needs a CUDA build with NCCL)");
    auto g = std::make_unique<Group>();
    g->timeout = std::chrono::milliseconds(timeoutMs);
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<size_t>(world);
    so.timeout = g->timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(addr, so);
    g->store = c10::make_intrusive<c10d::PrefixStore>("resnet-ts/gloo", tcp);
    auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
    g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, static_cast<int>(rank), static_cast<int>(world), opts);
    group = std::move(g);
  });
  def(env, exports, "distRank", [](Args& a) { return static_cast<int64_t>(current(a).backend->getRank()); });
  def(env, exports, "distWorldSize", [](Args& a) { return static_cast<int64_t>(current(a).backend->getSize()); });
  def(env, exports, "distIsInitialized", [](Args& a) { return static_cast<bool>(group); });
  // distAllreduce(tensors, op): in place on each tensor (CPU, contiguous).
  def(env, exports, "distAllreduce", [](Args& a) {
    auto ts = a.tensors(0, "tensors");
    c10d::AllreduceOptions o;
    o.reduceOp = reduceOp(a, 1);
    o.timeout = current(a).timeout;
    for (auto& t : ts) {
      std::vector<at::Tensor> one{t};
      wait(a, current(a).backend->allreduce(one, o));
    }
  });
  def(env, exports, "distBroadcast", [](Args& a) {
    auto ts = a.tensors(0, "tensors");
    int64_t root = a.integer(1, "root", 0);
    if (root < 0 || root >= current(a).backend->getSize()) a.typeError("root", "a rank of the group");
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = current(a).timeout;
    for (auto& t : ts) {
      std::vector<at::Tensor> one{t};
      wait(a, current(a).backend->broadcast(one, o));
    }
  });
  def(env, exports, "distBarrier", [](Args& a) {
    c10d::BarrierOptions o;
    o.timeout = current(a).timeout;
    wait(a, current(a).backend->barrier(o));
  });
  def(env, exports, "distDestroy", [](Args& a) { group.reset(); });
}

}  // namespace rts

#else

namespace rts {

void registerDistributed(Napi::Env env, Napi::Object exports) {
  for (const char* name : {"distInit", "distRank", "distWorldSize", "distAllreduce", "distBroadcast", "distBarrier", "distDestroy"}) {
    def(env, exports, name, [](Args& a) -> Napi::Value {
      throw Napi::Error::New(a.env(), std::string(a.fn()) + ": resnet-ts was built without gloo headers (install libgloo-dev and rebuild)");
    });
  }
  def(env, exports, "distIsInitialized", [](Args& a) { return false; });
}

}  // namespace rts

#endif
