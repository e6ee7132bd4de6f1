// Device utilities. CUDA specifics compile only against a CUDA libtorch (RESNET_TS_CUDA=1).
#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>

#if RESNET_TS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "tensor.h"

namespace rts {

void registerCuda(Napi::Env env, Napi::Object exports) {
  def(env, exports, "cudaIsAvailable", [](Args& a) { return at::globalContext().hasCUDA() && at::detail::getCUDAHooks().deviceCount() > 0; });
  def(env, exports, "cudaDeviceCount", [](Args& a) {
    return at::globalContext().hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().deviceCount()) : 0;
  });
  def(env, exports, "cudaBuilt", [](Args& a) { return static_cast<bool>(RESNET_TS_CUDA); });
  def(env, exports, "setCudnnBenchmark", [](Args& a) { at::globalContext().setBenchmarkCuDNN(a.boolean(0, "enabled", true)); });
#if RESNET_TS_CUDA
  def(env, exports, "cudaSynchronize", [](Args& a) { c10::cuda::device_synchronize(); });
  // cudaMemory(device): allocated, reserved and peak bytes of the caching allocator.
  def(env, exports, "cudaMemory", [](Args& a) -> Napi::Value {
    auto dev = static_cast<c10::DeviceIndex>(a.integer(0, "device", 0));
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
    auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    auto o = Napi::Object::New(a.env());
    o.Set("allocated", static_cast<double>(stats.allocated_bytes[agg].current));
    o.Set("reserved", static_cast<double>(stats.reserved_bytes[agg].current));
    o.Set("peakAllocated", static_cast<double>(stats.allocated_bytes[agg].peak));
    return o;
  });
  def(env, exports, "cudaResetPeak", [](Args& a) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(a.integer(0, "device", 0)));
  });
  def(env, exports, "cudaEmptyCache", [](Args& a) { c10::cuda::CUDACachingAllocator::emptyCache(); });
#else
  def(env, exports, "cudaSynchronize", [](Args& a) {});
  def(env, exports, "cudaMemory", [](Args& a) -> Napi::Value {
    throw Napi::Error::New(a.env(), "cudaMemory: this build of resnet-ts has no CUDA (libtorch without CUDA)");
  });
  def(env, exports, "cudaResetPeak", [](Args& a) {});
  def(env, exports, "cudaEmptyCache", [](Args& a) {});
#endif
}

}  // namespace rts
