// CUDA: device queries, memory statistics, cuDNN/TF32 switches, out-of-memory errors and CUDA graphs.
// The CUDA parts compile only against a CUDA libtorch (RESNET_TS_CUDA=1); a CPU build answers "none"
// to queries and refuses graph calls with a clear error. CI builds both variants on every commit.
#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <regex>

#if RESNET_TS_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "tensor.h"

namespace rts {

namespace {

bool cudaUsable() { return at::globalContext().hasCUDA() && at::detail::getCUDAHooks().deviceCount() > 0; }

// The JS class CUDA out-of-memory errors are made from (lib/cuda-error.ts registers it), one per JS
// environment (main thread, each worker); freed with the environment.
thread_local Napi::FunctionReference* oomClass = nullptr;

// What the caching allocator's out-of-memory observer saw last on this thread: it runs just before the
// allocator throws, and carries the exact numbers the exception's text only shows rounded.
struct OomRecord {
  bool pending = false;
  int64_t device = 0;
  double requested = 0, total = 0, free = 0;
};
thread_local OomRecord lastOom;

// "Tried to allocate 20.00 GiB" -> bytes (the fallback when no observer record is pending).
double parseSize(const std::string& msg, const char* before) {
  std::smatch m;
  std::regex re(std::string(before) + R"(\s+([\d.]+)\s*(bytes|KiB|MiB|GiB|TiB))");
  if (!std::regex_search(msg, m, re)) return -1;
  double v = std::stod(m[1].str());
  const std::string u = m[2].str();
  int p = u == "KiB" ? 1 : u == "MiB" ? 2 : u == "GiB" ? 3 : u == "TiB" ? 4 : 0;
  for (int i = 0; i < p; i++) v *= 1024;
  return v;
}

#if RESNET_TS_CUDA
c10::MempoolId_t poolArg(Args& a, size_t i) {
  if (!a.has(i)) return {0, 0};
  auto ids = a.ints(i, "pool");
  if (ids.size() != 2 || ids[0] < 0 || ids[1] < 0) a.typeError("pool", "a pool from graphPoolHandle() or graph.pool()");
  return {static_cast<c10::CaptureId_t>(ids[0]), static_cast<c10::CaptureId_t>(ids[1])};
}

Napi::Value poolJS(Napi::Env env, c10::MempoolId_t p) {
  auto arr = Napi::Array::New(env, 2);
  arr.Set(0u, static_cast<double>(p.first));
  arr.Set(1u, static_cast<double>(p.second));
  return arr;
}

// Live graphs of this JS environment by id: an id is never a pointer, so a stale or forged one is an error.
struct Graphs {
  std::map<int64_t, std::unique_ptr<at::cuda::CUDAGraph>> live;
  int64_t next = 1;
};
thread_local Graphs* graphs = nullptr;

at::cuda::CUDAGraph& graphArg(Args& a) {
  auto id = a.integer(0, "graph");
  auto it = graphs ? graphs->live.find(id) : decltype(graphs->live)::iterator{};
  if (!graphs || it == graphs->live.end()) throw Napi::Error::New(a.env(), std::string(a.fn()) + ": graph " + std::to_string(id) + " was disposed or never made");
  return *it->second;
}

cudaStreamCaptureMode captureMode(Args& a, size_t i) {
  std::string m = a.has(i) ? a.str(i, "captureMode") : "global";
  if (m == "global") return cudaStreamCaptureModeGlobal;
  if (m == "thread_local") return cudaStreamCaptureModeThreadLocal;
  if (m == "relaxed") return cudaStreamCaptureModeRelaxed;
  a.typeError("captureMode", "'global', 'thread_local' or 'relaxed'");
}

// Calls fn(i) for i < iters with `stream` current, ordered after and before the current stream's work.
void onStream(c10::cuda::CUDAStream stream, Napi::Function fn, int64_t iters) {
  auto current = c10::cuda::getCurrentCUDAStream();
  c10::Event before(c10::DeviceType::CUDA);
  before.record(current);
  before.block(stream);
  {
    c10::cuda::CUDAStreamGuard guard(stream);
    for (int64_t i = 0; i < iters; i++) fn.Call({Napi::Number::New(fn.Env(), static_cast<double>(i))});
  }
  c10::Event after(c10::DeviceType::CUDA);
  after.record(stream);
  after.block(current);
}
#endif

#if !RESNET_TS_CUDA
[[noreturn]] void noCuda(Args& a) {
  throw Napi::Error::New(a.env(), std::string(a.fn()) + ": this build of resnet-ts has no CUDA (it was built against a CPU libtorch); " +
                                      "rebuild against a CUDA one: npx resnet-ts setup --cuda");
}
#endif

}  // namespace

Napi::Error outOfMemoryError(Napi::Env env, const char* fn, const c10::OutOfMemoryError& e) {
  std::string msg = e.what_without_backtrace();
  bool cuda = msg.rfind("CUDA out of memory", 0) == 0;
  auto err = Napi::Error::New(env, std::string(fn) + ": " + msg);
  if (!cuda) return err;
  OomRecord r = lastOom;
  lastOom.pending = false;
  if (!r.pending) {
    r.requested = parseSize(msg, "Tried to allocate");
    r.total = parseSize(msg, "total capacity of");
    r.free = parseSize(msg, "of which");
  }
  Napi::Object obj = err.Value();
  if (oomClass && !oomClass->IsEmpty()) {
    obj = oomClass->New({Napi::String::New(env, std::string(fn) + ": " + msg)});
  } else {
    obj.Set("name", "CudaOutOfMemoryError");
  }
  obj.Set("requestedBytes", r.requested);
  obj.Set("freeBytes", r.free);
  obj.Set("totalBytes", r.total);
  obj.Set("device", static_cast<double>(r.device));
  return Napi::Error(env, obj);
}

void registerCuda(Napi::Env env, Napi::Object exports) {
  // cudnn.benchmark on by default: the training and inference shapes here are fixed, so the one search per
  // shape pays for itself from the second batch (torch.backends.cudnn.benchmark = True).
  at::globalContext().setBenchmarkCuDNN(true);
#if RESNET_TS_CUDA
  static std::once_flag observe;
  std::call_once(observe, [] {
    c10::cuda::CUDACachingAllocator::attachOutOfMemoryObserver([](int64_t device, size_t requested, size_t total, size_t free) {
      lastOom = {true, device, static_cast<double>(requested), static_cast<double>(total), static_cast<double>(free)};
    });
  });
#endif
  env.AddCleanupHook([] {
    delete oomClass;
    oomClass = nullptr;
#if RESNET_TS_CUDA
    delete graphs;
    graphs = nullptr;
#endif
  });

  def(env, exports, "cudaIsAvailable", [](Args& a) { return cudaUsable(); });
  def(env, exports, "cudaDeviceCount", [](Args& a) {
    return at::globalContext().hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().deviceCount()) : 0;
  });
  def(env, exports, "cudaBuilt", [](Args& a) { return static_cast<bool>(RESNET_TS_CUDA); });
  def(env, exports, "setCudnnBenchmark", [](Args& a) { at::globalContext().setBenchmarkCuDNN(a.boolean(0, "enabled", true)); });
  def(env, exports, "cudnnBenchmark", [](Args& a) { return at::globalContext().benchmarkCuDNN(); });
  // setAllowTF32(cudnn, cublas): TF32 for convolutions (PyTorch's default: on) and matmuls (default: off).
  def(env, exports, "setAllowTF32", [](Args& a) {
    at::globalContext().setAllowTF32CuDNN(a.boolean(0, "cudnn", true));
    at::globalContext().setAllowTF32CuBLAS(a.boolean(1, "cublas", false));
  });
  def(env, exports, "allowTF32", [](Args& a) { return std::make_tuple(at::globalContext().allowTF32CuDNN(), at::globalContext().allowTF32CuBLAS()); });
  def(env, exports, "cudaSetErrorClass", [](Args& a) {
    if (!a[0].IsFunction()) a.typeError("ctor", "a class");
    delete oomClass;
    oomClass = new Napi::FunctionReference(Napi::Persistent(a[0].As<Napi::Function>()));
  });

#if RESNET_TS_CUDA
  def(env, exports, "cudaSynchronize", [](Args& a) {
    if (cudaUsable()) c10::cuda::device_synchronize();
  });
  // cudaMemory(device): the caching allocator's current and peak bytes (all zero with no device).
  def(env, exports, "cudaMemory", [](Args& a) -> Napi::Value {
    auto o = Napi::Object::New(a.env());
    double v[3] = {0, 0, 0};
    auto dev = a.integer(0, "device", 0);
    if (cudaUsable()) {
      if (dev < 0 || dev >= at::detail::getCUDAHooks().deviceCount()) throw Napi::RangeError::New(a.env(), "cudaMemory: no CUDA device " + std::to_string(dev));
      auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(dev));
      auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
      v[0] = static_cast<double>(stats.allocated_bytes[agg].current);
      v[1] = static_cast<double>(stats.reserved_bytes[agg].current);
      v[2] = static_cast<double>(stats.allocated_bytes[agg].peak);
    }
    o.Set("allocated", v[0]);
    o.Set("reserved", v[1]);
    o.Set("peakAllocated", v[2]);
    return o;
  });
  def(env, exports, "cudaResetPeak", [](Args& a) {
    auto dev = a.integer(0, "device", 0);  // read (and checked) with or without a device, as cudaMemory does
    if (cudaUsable()) c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(dev));
  });
  def(env, exports, "cudaEmptyCache", [](Args& a) {
    if (cudaUsable()) c10::cuda::CUDACachingAllocator::emptyCache();
  });

  // CUDA graphs (torch.cuda.CUDAGraph): capture runs fn on a side stream between capture_begin and
  // capture_end, as torch.cuda.graph does, allocating from `pool` (shared between graphs when given).
  def(env, exports, "cudaGraphNew", [](Args& a) {
    if (!cudaUsable()) throw Napi::Error::New(a.env(), "cudaGraphNew: CUDA graphs need a CUDA device (cuda.isAvailable() is false)");
    if (!graphs) graphs = new Graphs();
    auto id = graphs->next++;
    graphs->live.emplace(id, std::make_unique<at::cuda::CUDAGraph>(a.boolean(0, "keepGraph", false)));
    return id;
  });
  def(env, exports, "cudaGraphCapture", [](Args& a) {
    auto& g = graphArg(a);
    if (!a[1].IsFunction()) a.typeError("fn", "a function");
    auto pool = poolArg(a, 2);
    auto mode = captureMode(a, 3);
    c10::cuda::device_synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    auto stream = c10::cuda::getStreamFromPool();
    c10::cuda::CUDAStreamGuard guard(stream);
    g.capture_begin(pool, mode);
    try {
      a[1].As<Napi::Function>().Call({});
    } catch (...) {
      // End the capture so the stream and the allocator leave capture mode; the graph is unusable.
      try {
        g.capture_end();
      } catch (...) {
      }
      g.reset();
      throw;
    }
    g.capture_end();
  });
  def(env, exports, "cudaGraphReplay", [](Args& a) { graphArg(a).replay(); });
  def(env, exports, "cudaGraphReset", [](Args& a) { graphArg(a).reset(); });
  def(env, exports, "cudaGraphPool", [](Args& a) { return poolJS(a.env(), graphArg(a).pool()); });
  def(env, exports, "cudaGraphDispose", [](Args& a) {
    if (graphs) graphs->live.erase(a.integer(0, "graph"));
  });
  def(env, exports, "cudaGraphPoolHandle", [](Args& a) { return poolJS(a.env(), at::cuda::graph_pool_handle()); });
  // cudaWarmup(fn, iters): fn(i) on a side stream, as PyTorch's docs prescribe before a capture, so lazy
  // initialisation (cuBLAS handles, cuDNN plans, autograd buffers) happens outside the graph.
  def(env, exports, "cudaWarmup", [](Args& a) {
    if (!cudaUsable()) throw Napi::Error::New(a.env(), "cudaWarmup: needs a CUDA device (cuda.isAvailable() is false)");
    if (!a[0].IsFunction()) a.typeError("fn", "a function");
    onStream(c10::cuda::getStreamFromPool(), a[0].As<Napi::Function>(), a.integer(1, "iters", 3));
  });
#else
  def(env, exports, "cudaSynchronize", [](Args& a) {});
  def(env, exports, "cudaMemory", [](Args& a) -> Napi::Value {
    auto o = Napi::Object::New(a.env());
    for (const char* k : {"allocated", "reserved", "peakAllocated"}) o.Set(k, 0.0);
    return o;
  });
  def(env, exports, "cudaResetPeak", [](Args& a) {});
  def(env, exports, "cudaEmptyCache", [](Args& a) {});
  for (const char* name : {"cudaGraphNew", "cudaGraphCapture", "cudaGraphReplay", "cudaGraphReset", "cudaGraphPool", "cudaGraphDispose",
                           "cudaGraphPoolHandle", "cudaWarmup"}) {
    def(env, exports, name, [](Args& a) { noCuda(a); });
  }
#endif
}

}  // namespace rts
