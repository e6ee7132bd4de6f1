// The CPU allocator guard: a request for more bytes than the machine has (RAM + swap) is refused
// with a JS-catchable error before malloc. Under Linux's "always overcommit" mode such a malloc
// would succeed, and the first write (zeros, copies) would get the process OOM-killed.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <sys/sysinfo.h>
#include <torch/version.h>

#include "tensor.h"

namespace rts {

namespace {

class GuardedCPUAllocator final : public c10::Allocator {
 public:
  GuardedCPUAllocator(c10::Allocator* inner, size_t limit) : inner_(inner), limit_(limit) {}

  c10::DataPtr allocate(size_t n) override {
    TORCH_CHECK_WITH(OutOfMemoryError, n <= limit_, "refusing to allocate ", n, " bytes: more than this machine's memory (",
                     limit_, " bytes of RAM and swap)");
    return inner_->allocate(n);
  }
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner_->copy_data(dest, src, count); }
#endif

 private:
  c10::Allocator* inner_;
  size_t limit_;
};

}  // namespace

void installAllocatorGuard() {
  static GuardedCPUAllocator* guard = [] {
    struct sysinfo si {};
    size_t limit = SIZE_MAX;
    if (sysinfo(&si) == 0) limit = (static_cast<size_t>(si.totalram) + si.totalswap) * si.mem_unit;
    return new GuardedCPUAllocator(c10::GetCPUAllocator(), limit);
  }();
  if (c10::GetCPUAllocator() != guard) c10::SetAllocator(c10::DeviceType::CPU, guard, /*priority=*/1);
}

}  // namespace rts
