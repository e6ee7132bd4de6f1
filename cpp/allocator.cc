// The CPU allocator guard: a request for more bytes than this process may use is refused with a
// JS-catchable error before malloc. Under Linux's "always overcommit" mode such a malloc would
// succeed, and the first write (zeros, copies) would get the process OOM-killed. "May use" is the
// machine's RAM + swap, or less where the process's cgroup (a container, a systemd unit) sets a
// memory limit: cgroup v2 memory.max (+ memory.swap.max), v1 memory.limit_in_bytes (or
// memory.memsw.limit_in_bytes), the smallest along the path from the process's cgroup to the root.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <sys/sysinfo.h>
#include <torch/version.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include "tensor.h"

namespace rts {

namespace {

class GuardedCPUAllocator final : public c10::Allocator {
 public:
  GuardedCPUAllocator(c10::Allocator* inner, size_t limit, std::string source)
      : inner_(inner), limit_(limit), source_(std::move(source)) {}

  c10::DataPtr allocate(size_t n) override {
    TORCH_CHECK_WITH(OutOfMemoryError, n <= limit_, "refusing to allocate ", n, " bytes: more than this process may use (", limit_,
                     " bytes: ", source_, ")");
    return inner_->allocate(n);
  }
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner_->copy_data(dest, src, count); }
#endif

 private:
  c10::Allocator* inner_;
  size_t limit_;
  std::string source_;
};

// The number in a cgroup file, or SIZE_MAX for "max", a missing file or anything unreadable.
size_t readLimit(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return SIZE_MAX;
  try {
    size_t used = 0;
    unsigned long long v = std::stoull(s, &used);
    return used == s.size() ? static_cast<size_t>(v) : SIZE_MAX;
  } catch (...) {
    return SIZE_MAX;
  }
}

size_t addCapped(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

// Where the hierarchy of the memory controller is mounted ("" when it is not): for v2 any cgroup2
// mount, for v1 a cgroup mount whose options name "memory". root is the hierarchy path mounted there.
std::string mountOf(bool v2, std::string* root) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    std::istringstream in(line);
    std::string id, parent, dev, rootField, point, opts, field;
    in >> id >> parent >> dev >> rootField >> point >> opts;
    while (in >> field && field != "-") {}
    std::string fstype, source, super;
    in >> fstype >> source >> super;
    bool match = v2 ? fstype == "cgroup2" : fstype == "cgroup" && ("," + super + ",").find(",memory,") != std::string::npos;
    if (match) {
      *root = rootField;
      return point;
    }
  }
  return "";
}

// The process's cgroup memory limit (RAM + the swap it may use), or SIZE_MAX when none is set.
size_t cgroupLimit(size_t swap, std::string* where) {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    // hierarchy-id:controllers:path; v2 is "0::path", v1's memory line lists "memory".
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
    if (!v2 && ("," + controllers + ",").find(",memory,") == std::string::npos) continue;
    std::string root;
    std::string point = mountOf(v2, &root);
    if (point.empty()) continue;
    std::string path = line.substr(b + 1);
    if (root != "/" && path.compare(0, root.size(), root) == 0) path = path.substr(root.size());
    size_t best = SIZE_MAX;
    // The cgroup's own limit and every ancestor's, up to the mount point.
    for (std::string dir = point + (path == "/" ? "" : path);; dir = dir.substr(0, dir.rfind('/'))) {
      size_t limit;
      if (v2) {
        size_t mem = readLimit(dir + "/memory.max");
        limit = mem == SIZE_MAX ? SIZE_MAX : addCapped(mem, std::min(readLimit(dir + "/memory.swap.max"), swap));
      } else {
        size_t mem = readLimit(dir + "/memory.limit_in_bytes");
        limit = std::min(readLimit(dir + "/memory.memsw.limit_in_bytes"), mem == SIZE_MAX ? SIZE_MAX : addCapped(mem, swap));
      }
      if (limit < best) {
        best = limit;
        *where = dir;
      }
      if (dir.size() <= point.size()) break;
    }
    if (best != SIZE_MAX) return best;
  }
  return SIZE_MAX;
}

}  // namespace

void installAllocatorGuard() {
  // Once per process, whichever environment (main thread or Worker) loads the addon first.
  static std::once_flag once;
  static GuardedCPUAllocator* guard = nullptr;
  std::call_once(once, [] {
    struct sysinfo si {};
    size_t machine = SIZE_MAX, swap = 0;
    if (sysinfo(&si) == 0) {
      machine = (static_cast<size_t>(si.totalram) + si.totalswap) * si.mem_unit;
      swap = static_cast<size_t>(si.totalswap) * si.mem_unit;
    }
    std::string where;
    size_t cgroup = cgroupLimit(swap, &where);
    guard = cgroup < machine ? new GuardedCPUAllocator(c10::GetCPUAllocator(), cgroup, "the memory limit of cgroup " + where)
                             : new GuardedCPUAllocator(c10::GetCPUAllocator(), machine, "this machine's RAM and swap");
    c10::SetAllocator(c10::DeviceType::CPU, guard, /*priority=*/1);
  });
}

}  // namespace rts
