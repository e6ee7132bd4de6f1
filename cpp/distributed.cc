// c10d process groups: a TCPStore rendezvous and a Gloo process group; allreduce, broadcast, barrier;
// the gradient reducer of DistributedDataParallel (buckets allreduced from autograd hooks while
// backward still runs) and SyncBatchNorm's autograd function. Every collective waits with the
// group's timeout, so a dead peer is an Error, not a hang.
// Compiled with Gloo only where gloo's headers were found (RESNET_TS_GLOO, see scripts/libtorch.mjs).
#include <ATen/ATen.h>

#include "tensor.h"

#if RESNET_TS_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>

namespace rts {

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout{0};
};
// One group per process, as c10d's default group: not thread-local, because autograd may run
// SyncBatchNorm's backward on a device thread.
std::unique_ptr<Group> group;

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

// Waits for a collective outside any JS call (autograd hooks, SyncBatchNorm): a c10::Error, which
// the calling entry point turns into a JS Error.
void waitOrThrow(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  TORCH_CHECK(work->wait(timeout), "distributed: collective did not complete");
}

void allreduceSum(at::Tensor& t) {
  TORCH_CHECK(group, "distributed: the process group was destroyed");
  c10d::AllreduceOptions o;
  o.timeout = group->timeout;
  std::vector<at::Tensor> one{t};
  waitOrThrow(group->backend->allreduce(one, o), group->timeout);
}

// DistributedDataParallel's gradient reducer. Parameters are put in buckets of about bucketBytes in
// reverse registration order (the order backward produces their gradients). A post-hook on each
// parameter's gradient accumulator counts the bucket down; once a bucket is complete, and every
// bucket before it has been launched (so every rank issues the same collectives in the same
// order), its gradients are flattened and an asynchronous allreduce starts while backward goes on.
// finish() launches what is left (parameters that got no gradient contribute zeros), waits, and
// writes the averages back into the gradients.
using AccPtr = decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::autograd::Variable&>()));

struct Reducer {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout{0};
  std::vector<at::Tensor> params;
  std::vector<AccPtr> accs;  // kept alive: a variable holds its accumulator only weakly
  std::vector<uintptr_t> hookKeys;
  std::vector<std::vector<size_t>> buckets;
  std::vector<size_t> bucketOf;
  std::mutex mu;
  bool armed = false;
  std::vector<size_t> pending;
  size_t next = 0;
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  int64_t launchedInBackward = 0;

  void reset() {
    pending.clear();
    for (auto& b : buckets) pending.push_back(b.size());
    next = 0;
    flats.assign(buckets.size(), at::Tensor());
    works.assign(buckets.size(), {});
    launchedInBackward = 0;
  }

  void launch(size_t b) {
    at::NoGradGuard ng;
    std::vector<at::Tensor> parts;
    for (size_t i : buckets[b]) {
      const at::Tensor g = params[i].grad();
      parts.push_back(g.defined() ? g.reshape({-1}) : at::zeros({params[i].numel()}, params[i].options()));
    }
    flats[b] = at::cat(parts);
    c10d::AllreduceOptions o;
    o.timeout = timeout;
    std::vector<at::Tensor> one{flats[b]};
    works[b] = backend->allreduce(one, o);
  }

  void onGradReady(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed) return;
    size_t b = bucketOf[i];
    if (pending[b] > 0) pending[b]--;
    while (next < buckets.size() && pending[next] == 0) {
      launch(next++);
      launchedInBackward++;
    }
  }

  // Waits for anything a previous, interrupted backward launched, so collectives stay paired.
  void drain() {
    for (auto& w : works)
      if (w) waitOrThrow(w, timeout);
  }

  void prepare() {
    std::lock_guard<std::mutex> lock(mu);
    drain();
    reset();
    armed = true;
  }

  int64_t finish() {
    std::lock_guard<std::mutex> lock(mu);
    armed = false;
    while (next < buckets.size()) launch(next++);
    const double world = static_cast<double>(backend->getSize());
    at::NoGradGuard ng;
    for (size_t b = 0; b < buckets.size(); b++) {
      waitOrThrow(works[b], timeout);
      works[b].reset();
      flats[b].div_(world);
      int64_t off = 0;
      for (size_t i : buckets[b]) {
        const int64_t k = params[i].numel();
        at::Tensor g = params[i].grad();
        if (g.defined()) g.copy_(flats[b].narrow(0, off, k).view(g.sizes()));
        off += k;
      }
    }
    int64_t launched = launchedInBackward;
    reset();
    return launched;
  }

  ~Reducer() {
    for (size_t i = 0; i < accs.size(); i++) accs[i]->del_post_hook(hookKeys[i]);
  }
};

std::map<int64_t, std::shared_ptr<Reducer>> reducers;
int64_t nextReducerId = 1;

Reducer& reducerArg(const Args& a) {
  int64_t id = a.integer(0, "reducer");
  auto it = reducers.find(id);
  if (it == reducers.end()) a.typeError("reducer", "a live reducer id (from distReducerCreate)");
  return *it->second;
}

// SyncBatchNorm (training mode): batch statistics over the whole global batch. The mean comes
// from one allreduce of [sum, count], the variance from a second of the squared deviations (no
// E[x^2] - E[x]^2 cancellation). Backward allreduces sum(dy) and sum(dy * xhat) for the input
// gradient; the weight and bias gradients stay local, for DDP to average as torch's does.
struct SyncBatchNormFn : public torch::autograd::Function<SyncBatchNormFn> {
  static std::vector<int64_t> statShape(const at::Tensor& x) {
    std::vector<int64_t> s(x.dim(), 1);
    s[1] = x.size(1);
    return s;
  }
  static std::vector<int64_t> reduceDims(const at::Tensor& x) {
    std::vector<int64_t> d;
    for (int64_t i = 0; i < x.dim(); i++)
      if (i != 1) d.push_back(i);
    return d;
  }

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            at::Tensor runningMean, at::Tensor runningVar, double eps, double momentum) {
    const int64_t C = x.size(1);
    const auto dims = reduceDims(x);
    const auto shape = statShape(x);
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor s = at::cat({xf.sum(dims), at::full({1}, static_cast<double>(x.numel() / C), xf.options())});
    allreduceSum(s);
    const double n = s[C].item<double>();
    at::Tensor mean = s.narrow(0, 0, C) / n;
    at::Tensor xc = xf - mean.view(shape);
    at::Tensor sq = (xc * xc).sum(dims);
    allreduceSum(sq);
    at::Tensor var = sq / n;
    at::Tensor invstd = (var + eps).rsqrt();
    at::Tensor xhat = xc * invstd.view(shape);
    at::Tensor y = weight.defined() ? xhat * weight.view(shape) + bias.view(shape) : xhat;
    if (runningMean.defined()) {
      at::NoGradGuard ng;
      runningMean.mul_(1 - momentum).add_(mean.to(runningMean.scalar_type()), momentum);
      runningVar.mul_(1 - momentum).add_((var * (n / std::max(n - 1, 1.0))).to(runningVar.scalar_type()), momentum);
    }
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["n"] = n;
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    return y.to(x.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& xhat = saved[0];
    const at::Tensor& invstd = saved[1];
    const at::Tensor& weight = saved[2];
    const double n = ctx->saved_data["n"].toDouble();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const int64_t C = xhat.size(1);
    const auto dims = reduceDims(xhat);
    const auto shape = statShape(xhat);
    at::Tensor dy = grads[0].to(at::kFloat);
    at::Tensor sumDy = dy.sum(dims);
    at::Tensor sumDyXhat = (dy * xhat).sum(dims);
    at::Tensor t = at::cat({sumDy, sumDyXhat});
    allreduceSum(t);
    at::Tensor meanDy = t.narrow(0, 0, C) / n;
    at::Tensor meanDyXhat = t.narrow(0, C, C) / n;
    at::Tensor scale = weight.defined() ? invstd * weight : invstd;
    at::Tensor dx = (dy - meanDy.view(shape) - xhat * meanDyXhat.view(shape)) * scale.view(shape);
    at::Tensor dw = weight.defined() ? sumDyXhat.to(weight.scalar_type()) : at::Tensor();
    at::Tensor db = weight.defined() ? sumDy.to(weight.scalar_type()) : at::Tensor();
    return {dx.to(dtype), dw, db, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

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
  def(env, exports, "distDestroy", [](Args& a) {
    reducers.clear();
    group.reset();
  });
  // distReducerCreate(params, bucketBytes) -> id: hooks the parameters' gradient accumulators.
  def(env, exports, "distReducerCreate", [](Args& a) {
    Group& g = current(a);
    auto params = a.tensors(0, "params");
    double bucketBytes = a.num(1, "bucketBytes");
    if (!(bucketBytes >= 1)) a.typeError("bucketBytes", "a number >= 1");
    if (params.empty()) a.typeError("params", "a non-empty array of tensors");
    for (auto& p : params)
      if (!p.requires_grad() || !p.is_leaf()) a.typeError("params", "leaf tensors that require grad");
    auto r = std::make_shared<Reducer>();
    r->backend = g.backend;
    r->timeout = g.timeout;
    r->params = params;
    r->bucketOf.assign(params.size(), 0);
    double bytes = 0;
    for (size_t k = params.size(); k-- > 0;) {
      const at::Tensor& p = params[k];
      const at::Tensor* prev = r->buckets.empty() ? nullptr : &params[r->buckets.back().back()];
      bool fresh = r->buckets.empty() || bytes >= bucketBytes || prev->scalar_type() != p.scalar_type() || prev->device() != p.device();
      if (fresh) {
        r->buckets.emplace_back();
        bytes = 0;
      }
      r->buckets.back().push_back(k);
      r->bucketOf[k] = r->buckets.size() - 1;
      bytes += static_cast<double>(p.numel() * p.element_size());
    }
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
  def(env, exports, "distReducerDestroy", [](Args& a) { reducers.erase(a.integer(0, "reducer")); });
  // distSyncBatchNorm(x, weight?, bias?, runningMean?, runningVar?, eps, momentum): training-mode BN over all ranks.
  def(env, exports, "distSyncBatchNorm", [](Args& a) {
    current(a);
    const at::Tensor& x = a.tensor(0, "input");
    auto w = a.optTensor(1, "weight");
    auto b = a.optTensor(2, "bias");
    auto rm = a.optTensor(3, "runningMean");
    auto rv = a.optTensor(4, "runningVar");
    double eps = a.num(5, "eps");
    double momentum = a.num(6, "momentum");
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
    return SyncBatchNormFn::apply(x, w.value_or(at::Tensor()), b.value_or(at::Tensor()), rm.value_or(at::Tensor()), rv.value_or(at::Tensor()), eps, momentum);
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
      throw Napi::Error::New(a.env(), std::string(a.fn()) + ": resnet-ts was built without gloo headers (install libgloo-dev and rebuild)");
    });
  }
  def(env, exports, "distIsInitialized", [](Args& a) { return false; });
}

}  // namespace rts

#endif
