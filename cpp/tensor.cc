// Tensors from JS memory, files and storages; copies out; metadata; dispose; the typed argument reader.
#include "tensor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <limits>

namespace rts {

namespace {

bool supportedDtype(int64_t code) {
  switch (static_cast<at::ScalarType>(code)) {
    case at::kFloat: case at::kDouble: case at::kHalf: case at::kBFloat16: case at::kLong:
    case at::kInt: case at::kShort: case at::kChar: case at::kByte: case at::kBool:
      return true;
    default:
      return false;
  }
}

// The error for a value that is not a handle of this thread: another thread's handle is named as such.
[[noreturn]] void notATensor(const Args& a, Napi::Value v, const char* name, const std::string& want) {
  if (TensorHandle::IsForeign(v))
    throw Napi::Error::New(a.env(), std::string(a.fn()) + ": argument '" + name + "' is a Tensor of another thread: a tensor " +
                                        "belongs to the thread (main or Worker) that made it; send its data, or share it explicitly");
  a.typeError(name, want);
}

}  // namespace

// ---- Args ----

at::Tensor& Args::tensor(size_t i, const char* name) const {
  Napi::Value v = i < info_.Length() ? info_[i] : env().Undefined();
  bool handle = false;
  at::Tensor* t = TensorHandle::Find(v, &handle);
  if (!handle) notATensor(*this, v, name, "a Tensor");
  if (!t) throw Napi::Error::New(env(), std::string(fn_) + ": argument '" + name + "' is a disposed Tensor");
  return *t;
}

std::optional<at::Tensor> Args::optTensor(size_t i, const char* name) const {
  if (!has(i)) return std::nullopt;
  return tensor(i, name);
}

std::vector<at::Tensor> Args::tensors(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsArray()) typeError(name, "an array of Tensors");
  auto arr = info_[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    bool handle = false;
    at::Tensor* t = TensorHandle::Find(v, &handle);
    if (!handle) notATensor(*this, v, name, "an array of Tensors");
    if (!t) throw Napi::Error::New(env(), std::string(fn_) + ": argument '" + name + "' holds a disposed Tensor");
    out.push_back(*t);
  }
  return out;
}

double Args::num(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsNumber()) typeError(name, "a number");
  return info_[i].As<Napi::Number>().DoubleValue();
}

std::optional<double> Args::optNum(size_t i, const char* name) const {
  if (!has(i)) return std::nullopt;
  return num(i, name);
}

static int64_t toInt(const Args& a, Napi::Value v, const char* name) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::floor(d) && std::abs(d) <= 9007199254740992.0) return static_cast<int64_t>(d);
  } else if (v.IsBigInt()) {
    bool lossless = false;
    int64_t x = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (lossless) return x;
  }
  a.typeError(name, "an integer");
}

int64_t Args::integer(size_t i, const char* name) const {
  return toInt(*this, i < info_.Length() ? info_[i] : env().Undefined(), name);
}

std::optional<int64_t> Args::optInt(size_t i, const char* name) const {
  if (!has(i)) return std::nullopt;
  return integer(i, name);
}

bool Args::boolean(size_t i, const char* name, bool dflt) const {
  if (!has(i)) return dflt;
  if (!info_[i].IsBoolean()) typeError(name, "a boolean");
  return info_[i].As<Napi::Boolean>().Value();
}

bool Args::isScalar(size_t i) const {
  // Not BigInt: that is what a tensor handle is.
  return i < info_.Length() && (info_[i].IsNumber() || info_[i].IsBoolean());
}

at::Scalar Args::scalar(size_t i, const char* name) const {
  Napi::Value v = i < info_.Length() ? info_[i] : env().Undefined();
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    // Integral numbers act like Python ints (an int tensor stays int), others like floats.
    if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9007199254740992.0) return at::Scalar(static_cast<int64_t>(d));
    return at::Scalar(d);
  }
  if (v.IsBoolean()) return at::Scalar(v.As<Napi::Boolean>().Value());
  if (v.IsBigInt()) return at::Scalar(integer(i, name));
  typeError(name, "a number");
}

std::vector<int64_t> Args::ints(size_t i, const char* name) const {
  Napi::Value v = i < info_.Length() ? info_[i] : env().Undefined();
  if (v.IsNumber() || v.IsBigInt()) return {toInt(*this, v, name)};
  if (!v.IsArray()) typeError(name, "an array of integers");
  auto arr = v.As<Napi::Array>();
  if (arr.Length() > 64) typeError(name, "an array of at most 64 integers");
  std::vector<int64_t> out(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) out[k] = toInt(*this, arr.Get(k), name);
  return out;
}

std::vector<int64_t> Args::pair(size_t i, const char* name) const {
  std::vector<int64_t> v = ints(i, name);
  if (v.size() == 1) v.push_back(v.front());
  if (v.size() != 2) typeError(name, "one or two integers");
  return v;
}

std::optional<std::vector<int64_t>> Args::optInts(size_t i, const char* name) const {
  if (!has(i)) return std::nullopt;
  return ints(i, name);
}

at::ScalarType Args::dtype(size_t i, const char* name) const {
  Napi::Value v = i < info_.Length() ? info_[i] : env().Undefined();
  if (!v.IsNumber()) typeError(name, "a dtype code");
  int64_t code = toInt(*this, v, name);
  if (!supportedDtype(code)) typeError(name, "a supported dtype code");
  return static_cast<at::ScalarType>(code);
}

std::optional<at::ScalarType> Args::optDtype(size_t i, const char* name) const {
  if (!has(i)) return std::nullopt;
  return dtype(i, name);
}

c10::Device Args::device(size_t i, const char* name) const {
  if (!has(i)) return c10::Device(c10::kCPU);
  std::string s = str(i, name);
  if (s != "cpu" && s.rfind("cuda", 0) != 0) typeError(name, "'cpu', 'cuda' or 'cuda:N'");
  c10::Device d(s);
  return d;
}

std::string Args::str(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsString()) typeError(name, "a string");
  return info_[i].As<Napi::String>().Utf8Value();
}

// ---- creation from memory and files ----

namespace {

int64_t checkedNumel(const Args& a, const std::vector<int64_t>& shape, const char* name) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) a.typeError(name, "a shape of non-negative sizes");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) a.typeError(name, "a shape whose size fits in 64 bits");
    n *= d;
  }
  return n;
}

std::pair<const uint8_t*, size_t> bytesOf(const Args& a, size_t i, const char* name) {
  Napi::Value v = i < a.size() ? a[i] : a.env().Undefined();
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    auto ab = ta.ArrayBuffer();
    return {static_cast<const uint8_t*>(ab.Data()) + ta.ByteOffset(), ta.ByteLength()};
  }
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    return {static_cast<const uint8_t*>(ab.Data()), ab.ByteLength()};
  }
  if (v.IsDataView()) {
    auto dv = v.As<Napi::DataView>();
    return {static_cast<const uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset(), dv.ByteLength()};
  }
  a.typeError(name, "a TypedArray, Buffer or ArrayBuffer");
}

// Owns a file descriptor: closed on every path out of the scope, exceptions included.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// The longest typed array or Buffer V8 makes on Node 20: 2^32 elements. Past it
// napi_create_typedarray does not fail, it aborts the process, so lengths are checked before.
constexpr uint64_t kMaxJsArrayLength = 1ull << 32;

void checkJsLength(Napi::Env env, const char* fn, uint64_t n, const char* unit) {
  if (n > kMaxJsArrayLength)
    throw Napi::Error::New(env, std::string(fn) + ": the tensor has " + std::to_string(n) + " " + unit + ", more than a JS typed array can hold (" +
                                    std::to_string(kMaxJsArrayLength) + "); copy it out in slices (narrow) instead");
}

Napi::Value copyOut(Napi::Env env, const at::Tensor& src) {
  checkJsLength(env, "toArray", static_cast<uint64_t>(src.numel()), "elements");
  at::Tensor t = src.detach();
  if (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
  t = t.to(c10::Device(c10::kCPU)).contiguous();
  size_t n = static_cast<size_t>(t.numel());
  size_t nbytes = n * t.element_size();
  auto ab = Napi::ArrayBuffer::New(env, nbytes);
  if (nbytes) std::memcpy(ab.Data(), t.data_ptr(), nbytes);
  napi_typedarray_type kind;
  switch (t.scalar_type()) {
    case at::kFloat: kind = napi_float32_array; break;
    case at::kDouble: kind = napi_float64_array; break;
    case at::kLong: kind = napi_bigint64_array; break;
    case at::kInt: kind = napi_int32_array; break;
    case at::kShort: kind = napi_int16_array; break;
    case at::kChar: kind = napi_int8_array; break;
    default: kind = napi_uint8_array; break;  // uint8, bool
  }
  napi_value out;
  NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, kind, n, ab, 0, &out), Napi::Value());
  return Napi::Value(env, out);
}

}  // namespace

void registerTensor(Napi::Env env, Napi::Object exports) {
  initHandles(env);

  auto dtypes = Napi::Object::New(env);
  for (auto [name, t] : std::initializer_list<std::pair<const char*, at::ScalarType>>{
           {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
           {"int64", at::kLong}, {"int32", at::kInt}, {"int16", at::kShort}, {"int8", at::kChar},
           {"uint8", at::kByte}, {"bool", at::kBool}}) {
    dtypes.Set(name, Napi::Number::New(env, static_cast<int>(t)));
  }
  exports.Set("dtypes", dtypes);

  // fromBytes(bytes, shape, dtype): a new CPU tensor holding a copy of bytes. Every other argument
  // is read first: reading one may run JS (a getter on the shape array) that detaches the buffer.
  def(env, exports, "fromBytes", [](Args& a) {
    auto shape = a.ints(1, "shape");
    auto dt = a.dtype(2, "dtype");
    int64_t n = checkedNumel(a, shape, "shape");
    auto [ptr, len] = bytesOf(a, 0, "data");
    size_t item = c10::elementSize(dt);
    if (static_cast<size_t>(n) > std::numeric_limits<size_t>::max() / item || static_cast<size_t>(n) * item != len)
      throw Napi::Error::New(a.env(), "fromBytes: data holds " + std::to_string(len) + " bytes but shape " +
                                          c10::str(c10::IntArrayRef(shape)) + " of " + c10::toString(dt) + " needs " +
                                          std::to_string(static_cast<size_t>(n) * item));
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
    if (len) std::memcpy(t.data_ptr(), ptr, len);
    return t;
  });

  // fromStorage(storage, size, stride, storageOffset): a view of a 1-D storage tensor, as torch.load
  // makes .pth tensors: views of one storage share it, and a stride-0 view copies nothing.
  def(env, exports, "fromStorage", [](Args& a) {
    auto size = a.ints(1, "size");
    auto stride = a.ints(2, "stride");
    int64_t offset = a.integer(3, "storageOffset");
    at::Tensor& storage = a.tensor(0, "storage");
    if (storage.dim() != 1 || !storage.is_contiguous() || storage.storage_offset() != 0 || !storage.has_storage() ||
        storage.storage().nbytes() != static_cast<size_t>(storage.numel()) * storage.element_size())
      a.typeError("storage", "a 1-D tensor holding its whole storage");
    if (size.size() != stride.size()) throw Napi::Error::New(a.env(), "fromStorage: size and stride differ in length");
    int64_t storageNumel = storage.numel();
    checkedNumel(a, size, "size");
    if (offset < 0) a.typeError("storageOffset", "non-negative");
    int64_t last = offset;
    bool empty = false;
    for (size_t d = 0; d < size.size(); d++) {
      if (stride[d] < 0) a.typeError("stride", "non-negative");
      if (size[d] == 0) empty = true;
      else if (stride[d] > 0 && (size[d] - 1) > (std::numeric_limits<int64_t>::max() - last) / stride[d])
        throw Napi::Error::New(a.env(), "fromStorage: view overflows");
      else last += (size[d] - 1) * stride[d];
    }
    if (!empty && last >= storageNumel)
      throw Napi::Error::New(a.env(), "fromStorage: view reaches element " + std::to_string(last) + " of a storage of " + std::to_string(storageNumel));
    return storage.detach().as_strided(size, stride, offset);
  });

  // fromFile(path, byteOffset, shape, dtype): reads the bytes straight into a new tensor (no JS copy).
  def(env, exports, "fromFile", [](Args& a) {
    std::string path = a.str(0, "path");
    int64_t offset = a.integer(1, "byteOffset");
    auto shape = a.ints(2, "shape");
    auto dt = a.dtype(3, "dtype");
    int64_t n = checkedNumel(a, shape, "shape");
    if (offset < 0) a.typeError("byteOffset", "non-negative");
    size_t item = c10::elementSize(dt);
    // Non-blocking, so a FIFO's open does not wait for a writer; refused below unless regular.
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (fd.get() < 0) throw Napi::Error::New(a.env(), "fromFile: cannot open " + path + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(fd.get(), &st) != 0) throw Napi::Error::New(a.env(), "fromFile: cannot stat " + path);
    if (!S_ISREG(st.st_mode)) throw Napi::Error::New(a.env(), "fromFile: " + path + " is not a regular file");
    uint64_t nbytes = static_cast<uint64_t>(n) * item;
    if (static_cast<uint64_t>(n) > std::numeric_limits<uint64_t>::max() / item || static_cast<uint64_t>(offset) > static_cast<uint64_t>(st.st_size) ||
        nbytes > static_cast<uint64_t>(st.st_size) - static_cast<uint64_t>(offset))
      throw Napi::Error::New(a.env(), "fromFile: " + path + " is too short for a tensor of " + std::to_string(nbytes) + " bytes at offset " + std::to_string(offset));
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
    auto* dst = static_cast<uint8_t*>(t.data_ptr());
    uint64_t done = 0;
    while (done < nbytes) {
      ssize_t r = ::pread(fd.get(), dst + done, nbytes - done, offset + static_cast<off_t>(done));
      if (r <= 0) {
        if (r < 0 && errno == EINTR) continue;
        throw Napi::Error::New(a.env(), "fromFile: read failed in " + path);
      }
      done += static_cast<uint64_t>(r);
    }
    return t;
  });

  def(env, exports, "toArray", [](Args& a) { return copyOut(a.env(), a.tensor(0, "self")); });

  // toBytes(t): the raw bytes of a contiguous CPU copy, in the tensor's own dtype (for files).
  def(env, exports, "toBytes", [](Args& a) -> Napi::Value {
    const at::Tensor& self = a.tensor(0, "self");
    checkJsLength(a.env(), "toBytes", static_cast<uint64_t>(self.numel()) * self.element_size(), "bytes");
    at::Tensor t = self.detach().to(c10::Device(c10::kCPU)).contiguous();
    size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
    auto buf = Napi::Buffer<uint8_t>::Copy(a.env(), static_cast<const uint8_t*>(t.data_ptr()), nbytes);
    return buf;
  });

  def(env, exports, "item", [](Args& a) -> Napi::Value {
    at::Scalar s = a.tensor(0, "self").item();
    if (s.isBoolean()) return Napi::Boolean::New(a.env(), s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(a.env(), static_cast<double>(s.toLong()));
    return Napi::Number::New(a.env(), s.toDouble());
  });

  def(env, exports, "shape", [](Args& a) { return a.tensor(0, "self").sizes().vec(); });
  def(env, exports, "strides", [](Args& a) { return a.tensor(0, "self").strides().vec(); });
  def(env, exports, "dtype", [](Args& a) { return static_cast<int>(a.tensor(0, "self").scalar_type()); });
  def(env, exports, "device", [](Args& a) { return a.tensor(0, "self").device().str(); });
  def(env, exports, "numel", [](Args& a) { return a.tensor(0, "self").numel(); });
  def(env, exports, "dim", [](Args& a) { return a.tensor(0, "self").dim(); });
  def(env, exports, "requiresGrad", [](Args& a) { return a.tensor(0, "self").requires_grad(); });
  def(env, exports, "isLeaf", [](Args& a) { return a.tensor(0, "self").is_leaf(); });
  def(env, exports, "isContiguous", [](Args& a) {
    bool cl = a.boolean(1, "channelsLast", false);
    return a.tensor(0, "self").is_contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  });
  def(env, exports, "isPinned", [](Args& a) { return a.tensor(0, "self").is_pinned(); });
  def(env, exports, "dataPtr", [](Args& a) { return static_cast<double>(reinterpret_cast<uintptr_t>(a.tensor(0, "self").data_ptr())); });

  // dispose(h): frees the tensor now; a second dispose is a no-op.
  def(env, exports, "dispose", [](Args& a) {
    Napi::Value v = a.size() ? a[0] : a.env().Undefined();
    if (!TensorHandle::Is(v)) notATensor(a, v, "self", "a Tensor");
    TensorHandle::Release(v);
  });
  def(env, exports, "isDisposed", [](Args& a) {
    Napi::Value v = a.size() ? a[0] : a.env().Undefined();
    if (!TensorHandle::Is(v)) notATensor(a, v, "self", "a Tensor");
    return TensorHandle::Find(v, nullptr) == nullptr;
  });
  // isHandle(v): whether v is a tensor handle made by this addon (live or disposed).
  def(env, exports, "isHandle", [](Args& a) { return a.size() > 0 && TensorHandle::Is(a[0]); });
  def(env, exports, "memory", [](Args& a) -> Napi::Value {
    auto s = memoryStats();
    auto o = Napi::Object::New(a.env());
    o.Set("tensors", Napi::Number::New(a.env(), static_cast<double>(s.tensors)));
    o.Set("storages", Napi::Number::New(a.env(), static_cast<double>(s.storages)));
    o.Set("bytes", Napi::Number::New(a.env(), static_cast<double>(s.bytes)));
    return o;
  });
}

}  // namespace rts
