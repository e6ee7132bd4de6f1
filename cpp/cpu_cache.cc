// A cache of large CPU blocks, in front of the allocator guard. glibc serves requests above 32 MiB (its
// largest mmap threshold) with mmap and returns them with munmap, so every batch-16 ResNet forward
// page-faulted each of its big activations in again: 74,000 minor faults and ~10 % of the time in the
// kernel per resnet50 forward, where onnxruntime's arena faults none; below that, glibc's threshold starts at
// 128 KiB and its heap trimming faulted batch-1 activations in again too. Freed blocks of 128 KiB or more are
// kept, by size class, and handed out again; smaller ones go straight to malloc, which reuses them itself.
// The cached total is capped (a quarter of RAM, at most 8 GiB, RESNET_TS_CPU_CACHE_MB overrides, 0 turns
// the cache off), and a failed allocation empties the cache and tries once more.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <sys/sysinfo.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor.h"

namespace rts {

namespace {

constexpr size_t kMinBytes = size_t{128} << 10;

// Sizes round up to 1/16 of their power of two, so batches of nearby sizes share blocks at a cost of at
// most ~6 % more memory.
size_t sizeClass(size_t n) {
  size_t p = kMinBytes;
  while (p < n) p <<= 1;
  size_t step = p >> 4;
  return (n + step - 1) / step * step;
}

class BlockCache final : public c10::Allocator {
 public:
  BlockCache(c10::Allocator* inner, size_t limit) : inner_(inner), limit_(limit) {}

  c10::DataPtr allocate(size_t n) override {
    // Past 2^48 bytes no machine has the memory: the guard behind refuses it, with no size class to round.
    if (n < kMinBytes || n > (size_t{1} << 48) || limit_ == 0) return inner_->allocate(n);
    size_t size = sizeClass(n);
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        hits_++;
        return {p, p, &deleteAny, c10::Device(c10::DeviceType::CPU)};
      }
      misses_++;
    }
    c10::DataPtr block;
    try {
      block = inner_->allocate(size);
    } catch (const c10::Error&) {
      empty();
      try {
        block = inner_->allocate(size);
      } catch (const c10::Error&) {
        // The exact size, uncached: the guard's error then names what was asked for, and a request the
        // rounding pushed over the limit still succeeds.
        return inner_->allocate(n);
      }
    }
    void* p = block.get();
    std::lock_guard<std::mutex> g(mu_);
    blocks_.emplace(p, Block{std::move(block), size});
    return {p, p, &deleteAny, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &deleteAny; }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner_->copy_data(dest, src, count); }
#endif

  // Returns a block to the cache, or frees it when the cache is full; anything else came from inner.
  void release(void* p) {
    c10::DataPtr drop;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = blocks_.find(p);
      if (it != blocks_.end()) {
        size_t size = it->second.size;
        if (cached_ + size <= limit_) {
          free_[size].push_back(p);
          cached_ += size;
          return;
        }
        drop = std::move(it->second.data);
        blocks_.erase(it);
        return;
      }
    }
    inner_->raw_deleter()(p);
  }

  // Frees every cached block (outside the lock: freeing may be slow).
  void empty() {
    std::vector<c10::DataPtr> drop;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (auto& [size, ps] : free_) {
        for (void* p : ps) {
          auto it = blocks_.find(p);
          drop.push_back(std::move(it->second.data));
          blocks_.erase(it);
        }
      }
      free_.clear();
      cached_ = 0;
    }
  }

  struct Stats {
    int64_t cachedBytes, cachedBlocks, liveBlocks, hits, misses, limit;
  };
  Stats stats() {
    std::lock_guard<std::mutex> g(mu_);
    int64_t cachedBlocks = 0;
    for (auto& [size, ps] : free_) cachedBlocks += static_cast<int64_t>(ps.size());
    return {static_cast<int64_t>(cached_), cachedBlocks, static_cast<int64_t>(blocks_.size()) - cachedBlocks, hits_, misses_,
            static_cast<int64_t>(limit_)};
  }

  static void deleteAny(void* p);

 private:
  struct Block {
    c10::DataPtr data;
    size_t size;
  };
  c10::Allocator* inner_;
  size_t limit_;
  std::mutex mu_;
  std::unordered_map<void*, Block> blocks_;  // every block made here, in use or cached
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  int64_t hits_ = 0, misses_ = 0;
};

// Never destroyed: tensors freed during process exit still find it.
BlockCache* cache = nullptr;

void BlockCache::deleteAny(void* p) { cache->release(p); }

size_t defaultLimit() {
  if (const char* env = std::getenv("RESNET_TS_CPU_CACHE_MB")) return static_cast<size_t>(std::strtoull(env, nullptr, 10)) << 20;
  struct sysinfo si {};
  size_t ram = sysinfo(&si) == 0 ? static_cast<size_t>(si.totalram) * si.mem_unit : 0;
  return std::min(ram / 4, size_t{8} << 30);
}

}  // namespace

void installCpuCache() {
  if (!cache) cache = new BlockCache(c10::GetCPUAllocator(), defaultLimit());
  if (c10::GetCPUAllocator() != cache) c10::SetAllocator(c10::DeviceType::CPU, cache, /*priority=*/2);
}

// Called when a JS environment (a Worker) is torn down: the blocks its tensors held go back to the system
// rather than staying cached for a thread that is gone.
void emptyCpuCache() {
  if (cache) cache->empty();
}

void registerCpuCache(Napi::Env env, Napi::Object exports) {
  def(env, exports, "cpuCacheStats", [](Args& a) -> Napi::Value {
    auto s = cache->stats();
    auto o = Napi::Object::New(a.env());
    o.Set("cachedBytes", static_cast<double>(s.cachedBytes));
    o.Set("cachedBlocks", static_cast<double>(s.cachedBlocks));
    o.Set("liveBlocks", static_cast<double>(s.liveBlocks));
    o.Set("hits", static_cast<double>(s.hits));
    o.Set("misses", static_cast<double>(s.misses));
    o.Set("limitBytes", static_cast<double>(s.limit));
    return o;
  });
  def(env, exports, "cpuCacheEmpty", [](Args& a) { cache->empty(); });
}

}  // namespace rts
