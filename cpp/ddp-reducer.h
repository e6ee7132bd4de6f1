// DistributedDataParallel's gradient reducer (used by cpp/distributed.cc only): buckets of
// gradients allreduced from autograd hooks while backward still runs, in the same order on every rank.
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <chrono>
#include <mutex>
#include <vector>

namespace rts {

// Waits for a collective outside any JS call (autograd hooks, SyncBatchNorm): a c10::Error, which
// the calling entry point turns into a JS Error.
inline void waitOrThrow(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  TORCH_CHECK(work->wait(timeout), "distributed: collective did not complete");
}

// DistributedDataParallel's gradient reducer. Its buckets come from distReducerCreate (libtorch's
// compute_bucket_assignment_by_size), the last parameters first, as backward produces their
// gradients; every rank has agreed on the parameters, so on the buckets. A post-hook on each
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

}  // namespace rts
