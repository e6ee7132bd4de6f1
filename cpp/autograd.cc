// Autograd, grad mode, autocast, and the random generator's seed and state.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include "tensor.h"

// OpenMP 5.0's omp_pause_resource_all, from the libgomp libtorch links (weak: null where libtorch has no OpenMP).
extern "C" int omp_pause_resource_all(int kind) __attribute__((weak));

namespace rts {

namespace {

at::DeviceType deviceType(const Args& a, size_t i) {
  std::string s = a.str(i, "deviceType");
  if (s == "cpu") return at::kCPU;
  if (s == "cuda") return at::kCUDA;
  a.typeError("deviceType", "'cpu' or 'cuda'");
}

}  // namespace

void registerAutograd(Napi::Env env, Napi::Object exports) {
  def(env, exports, "requiresGrad_", [](Args& a) -> const at::Tensor& {
    return a.tensor(0, "self").requires_grad_(a.boolean(1, "requiresGrad", true));
  });
  // backward(loss, gradient?, retainGraph)
  def(env, exports, "backward", [](Args& a) {
    at::Tensor& t = a.tensor(0, "self");
    auto g = a.optTensor(1, "gradient");
    t.backward(g ? *g : at::Tensor(), a.boolean(2, "retainGraph", false));
  });
  def(env, exports, "grad", [](Args& a) -> std::optional<at::Tensor> {
    const at::Tensor& g = a.tensor(0, "self").grad();
    return g.defined() ? std::optional<at::Tensor>(g) : std::nullopt;
  });
  def(env, exports, "setGrad", [](Args& a) {
    at::Tensor& self = a.tensor(0, "self");
    auto g = a.optTensor(1, "grad");
    // As torch's `.grad =` setter: a gradient must match its tensor, or backward and optimizers misread it.
    if (g && (g->sizes() != self.sizes() || g->scalar_type() != self.scalar_type() || g->device() != self.device()))
      throw Napi::Error::New(a.env(), "setGrad: assigned grad " + c10::str(g->sizes()) + " " + c10::toString(g->scalar_type()) + " on " +
                                          g->device().str() + " does not match the tensor's " + c10::str(self.sizes()) + " " +
                                          c10::toString(self.scalar_type()) + " on " + self.device().str());
    self.mutable_grad() = g ? *g : at::Tensor();
  });
  def(env, exports, "setGradEnabled", [](Args& a) {
    bool prev = at::GradMode::is_enabled();
    at::GradMode::set_enabled(a.boolean(0, "enabled", true));
    return prev;
  });
  def(env, exports, "isGradEnabled", [](Args& a) { return at::GradMode::is_enabled(); });

  // autocastEnter(deviceType, dtype) / autocastExit(deviceType, prevEnabled, prevDtype), as torch.autocast does.
  def(env, exports, "autocastState", [](Args& a) -> Napi::Value {
    at::DeviceType dt = deviceType(a, 0);
    auto o = Napi::Array::New(a.env(), 2);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    o.Set(0u, Napi::Boolean::New(a.env(), at::autocast::is_autocast_enabled(dt)));
    o.Set(1u, Napi::Number::New(a.env(), static_cast<int>(at::autocast::get_autocast_dtype(dt))));
#else
    o.Set(0u, Napi::Boolean::New(a.env(), dt == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled()));
    o.Set(1u, Napi::Number::New(a.env(), static_cast<int>(dt == at::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                                                                          : at::autocast::get_autocast_cpu_dtype())));
#endif
    return o;
  });
  def(env, exports, "setAutocast", [](Args& a) {
    at::DeviceType dt = deviceType(a, 0);
    bool enabled = a.boolean(1, "enabled", true);
    at::ScalarType dtype = a.dtype(2, "dtype");
    if (dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kFloat) a.typeError("dtype", "float16, bfloat16 or float32");
    bool entering = a.boolean(3, "entering", true);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(dt, enabled);
    at::autocast::set_autocast_dtype(dt, dtype);
#else
    if (dt == at::kCUDA) { at::autocast::set_enabled(enabled); at::autocast::set_autocast_gpu_dtype(dtype); }
    else { at::autocast::set_cpu_enabled(enabled); at::autocast::set_autocast_cpu_dtype(dtype); }
#endif
    if (entering) at::autocast::increment_nesting();
    else if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  });

  def(env, exports, "manualSeed", [](Args& a) { at::manual_seed(static_cast<uint64_t>(a.integer(0, "seed"))); });
  def(env, exports, "rngState", [](Args& a) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  });
  def(env, exports, "setRngState", [](Args& a) {
    at::Tensor& s = a.tensor(0, "state");
    if (s.scalar_type() != at::kByte || s.dim() != 1 || !s.is_cpu())
      throw Napi::Error::New(a.env(), "setRngState: state must be a 1-D uint8 CPU tensor from rngState()");
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(s);
  });
  def(env, exports, "setNumThreads", [](Args& a) {
    int64_t n = a.integer(0, "n");
    if (n < 1 || n > 1024) a.typeError("n", "an integer in 1..1024");
    at::set_num_threads(static_cast<int>(n));
  });
  def(env, exports, "getNumThreads", [](Args& a) { return at::get_num_threads(); });
  // Ends the calling thread's OpenMP worker threads (omp_pause_resource_all(omp_pause_soft)); the next parallel
  // region starts new ones. libgomp stops spin-waiting at barriers (1,000 spins instead of 300,000) in every
  // team of the process while its pools hold more threads than there are CPUs, so an idle pool left on the
  // main thread slows a session Worker's own team; releasing it removes that. False where there is no OpenMP.
  def(env, exports, "releaseThreadPool", [](Args& a) {
    if (omp_pause_resource_all == nullptr) return false;
    return omp_pause_resource_all(1 /* omp_pause_soft */) == 0;
  });
  def(env, exports, "torchVersion", [](Args& a) { return std::string(TORCH_VERSION); });
}

}  // namespace rts
