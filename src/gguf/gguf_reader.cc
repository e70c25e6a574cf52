#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "gguf/gguf.h"

namespace strata::gguf {
namespace {

constexpr uint64_t kMaxStringLen = 1ull << 30;  // 1 GiB: anything larger is hostile
constexpr uint64_t kMaxDims = 4;                // GGML_MAX_DIMS
// Far above any real model (tens of keys, thousands of tensors, vocabularies of ~300k).
constexpr uint64_t kMaxMetadataCount = 1ull << 16;
constexpr uint64_t kMaxTensorCount = 1ull << 18;
constexpr uint64_t kMaxStringArray = 1ull << 22;

// Bounds-checked little-endian cursor over the file image.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  Status Read(T* out, const char* what) {
    if (remaining() < sizeof(T))
      return Errorf("truncated file: reading %s at offset %zu", what, pos_);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status ReadString(std::string_view* out, const char* what) {
    uint64_t len = 0;
    STRATA_RETURN_IF_ERROR(Read(&len, what));
    if (len > kMaxStringLen) return Errorf("%s: string length %" PRIu64 " is too large", what, len);
    if (len > remaining())
      return Errorf("truncated file: %s string of %" PRIu64 " bytes at offset %zu", what, len,
                    pos_);
    *out = std::string_view(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return Status::Ok();
  }
  Status Skip(uint64_t n, const char* what) {
    if (n > remaining()) return Errorf("truncated file: %s at offset %zu", what, pos_);
    pos_ += n;
    return Status::Ok();
  }
  const uint8_t* here() const { return data_ + pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

bool ValidValueType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kFloat64); }

// An integer of type T, kept in both Value::u and Value::i (two's complement wrap-around).
template <typename T>
Status ReadInteger(Cursor& c, Value* v, const char* what) {
  T x = 0;
  STRATA_RETURN_IF_ERROR(c.Read(&x, what));
  // A signed x sign-extends (int8_t too: clang-tidy takes a template's int8_t for a char).
  v->i = static_cast<int64_t>(x);  // NOLINT(bugprone-signed-char-misuse)
  v->u = static_cast<uint64_t>(v->i);
  return Status::Ok();
}

template <typename T>
Status ReadFloat(Cursor& c, Value* v, const char* what) {
  T x = 0;
  STRATA_RETURN_IF_ERROR(c.Read(&x, what));
  v->f = x;
  return Status::Ok();
}

Status ReadScalar(Cursor& c, ValueType t, Value* v, const char* what) {
  v->type = t;
  switch (t) {
    case ValueType::kUint8: return ReadInteger<uint8_t>(c, v, what);
    case ValueType::kInt8: return ReadInteger<int8_t>(c, v, what);
    case ValueType::kUint16: return ReadInteger<uint16_t>(c, v, what);
    case ValueType::kInt16: return ReadInteger<int16_t>(c, v, what);
    case ValueType::kUint32: return ReadInteger<uint32_t>(c, v, what);
    case ValueType::kInt32: return ReadInteger<int32_t>(c, v, what);
    case ValueType::kUint64: return ReadInteger<uint64_t>(c, v, what);
    case ValueType::kInt64: return ReadInteger<int64_t>(c, v, what);
    case ValueType::kFloat32: return ReadFloat<float>(c, v, what);
    case ValueType::kFloat64: return ReadFloat<double>(c, v, what);
    case ValueType::kBool: {
      uint8_t x = 0;
      STRATA_RETURN_IF_ERROR(c.Read(&x, what));
      if (x > 1) return Errorf("%s: invalid bool value %u", what, x);
      v->u = x;
      return Status::Ok();
    }
    case ValueType::kString: return c.ReadString(&v->s, what);
    default: return Errorf("%s: unexpected value type %u", what, static_cast<unsigned>(t));
  }
}

}  // namespace

size_t ValueTypeSize(ValueType t) {
  switch (t) {
#define STRATA_SIZE_CASE(name, id, text, size) \
  case ValueType::name: return size;
    STRATA_GGUF_VALUE_TYPES(STRATA_SIZE_CASE)
#undef STRATA_SIZE_CASE
  }
  return 0;
}

const char* ValueTypeName(ValueType t) {
  switch (t) {
#define STRATA_NAME_CASE(name, id, text, size) \
  case ValueType::name: return text;
    STRATA_GGUF_VALUE_TYPES(STRATA_NAME_CASE)
#undef STRATA_NAME_CASE
  }
  return "?";
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

Result<std::shared_ptr<File>> File::Open(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(auto map, MappedFile::Open(path));
  std::shared_ptr<File> f(new File());
  f->map_ = map;
  f->base_ = map->data();
  f->size_ = map->size();
  Status st = f->ParseImpl();
  if (!st.ok()) return st.With("invalid GGUF file '" + path + "'");
  return f;
}

Result<std::shared_ptr<File>> File::Parse(const uint8_t* data, size_t size) {
  std::shared_ptr<File> f(new File());
  f->base_ = data;
  f->size_ = size;
  Status st = f->ParseImpl();
  if (!st.ok()) return st.With("invalid GGUF data");
  return f;
}

Status File::ParseImpl() {
  Cursor c(base_, size_);
  uint32_t magic = 0;
  STRATA_RETURN_IF_ERROR(c.Read(&magic, "magic"));
  if (std::memcmp(&magic, "GGUF", 4) != 0) return Status::Error("bad magic (not a GGUF file)");
  STRATA_RETURN_IF_ERROR(c.Read(&version_, "version"));
  if (version_ != 2 && version_ != 3)
    return Errorf("unsupported GGUF version %u (supported: 2, 3)", version_);
  uint64_t n_tensors = 0, n_kv = 0;
  STRATA_RETURN_IF_ERROR(c.Read(&n_tensors, "tensor count"));
  STRATA_RETURN_IF_ERROR(c.Read(&n_kv, "metadata count"));
  // Each kv needs >= 8+1+4 bytes, each tensor info >= 8+4+8+4+8 bytes: reject absurd counts
  // before reserving memory.
  if (n_kv > c.remaining() / 13)
    return Errorf("metadata count %" PRIu64 " exceeds file size", n_kv);
  if (n_tensors > c.remaining() / 32)
    return Errorf("tensor count %" PRIu64 " exceeds file size", n_tensors);
  // A sparse file can be large without holding anything: counts are also capped absolutely
  // (far above real models), and reservations grow with what is actually parsed.
  if (n_kv > kMaxMetadataCount)
    return Errorf("metadata count %" PRIu64 " exceeds the limit of %" PRIu64, n_kv,
                  kMaxMetadataCount);
  if (n_tensors > kMaxTensorCount)
    return Errorf("tensor count %" PRIu64 " exceeds the limit of %" PRIu64, n_tensors,
                  kMaxTensorCount);

  meta_.reserve(std::min<uint64_t>(n_kv, 1024));
  std::unordered_set<std::string_view> keys;
  for (uint64_t k = 0; k < n_kv; ++k) {
    MetaEntry e;
    STRATA_RETURN_IF_ERROR(c.ReadString(&e.key, "metadata key"));
    if (!keys.insert(e.key).second)
      return Errorf("duplicate metadata key '%.*s'", static_cast<int>(e.key.size()), e.key.data());
    uint32_t t = 0;
    STRATA_RETURN_IF_ERROR(c.Read(&t, "metadata type"));
    if (!ValidValueType(t))
      return Errorf("metadata '%.*s': unknown value type %u", static_cast<int>(e.key.size()),
                    e.key.data(), t);
    const auto vt = static_cast<ValueType>(t);
    if (vt == ValueType::kArray) {
      e.value.type = vt;
      uint32_t et = 0;
      STRATA_RETURN_IF_ERROR(c.Read(&et, "array element type"));
      if (!ValidValueType(et) || et == static_cast<uint32_t>(ValueType::kArray))
        return Errorf("metadata '%.*s': invalid array element type %u",
                      static_cast<int>(e.key.size()), e.key.data(), et);
      e.value.elem_type = static_cast<ValueType>(et);
      STRATA_RETURN_IF_ERROR(c.Read(&e.value.n_elems, "array length"));
      if (e.value.elem_type == ValueType::kString) {
        if (e.value.n_elems > c.remaining() / 8)
          return Errorf("metadata '%.*s': array length exceeds file size",
                        static_cast<int>(e.key.size()), e.key.data());
        if (e.value.n_elems > kMaxStringArray)
          return Errorf(
              "metadata '%.*s': array of %" PRIu64 " strings exceeds the limit of %" PRIu64,
              static_cast<int>(e.key.size()), e.key.data(), e.value.n_elems, kMaxStringArray);
        e.value.str_elems.reserve(std::min<uint64_t>(e.value.n_elems, 1u << 16));
        for (uint64_t i = 0; i < e.value.n_elems; ++i) {
          std::string_view s;
          STRATA_RETURN_IF_ERROR(c.ReadString(&s, "array string"));
          e.value.str_elems.push_back(s);
        }
      } else {
        const size_t es = ValueTypeSize(e.value.elem_type);
        if (e.value.n_elems > c.remaining() / es)
          return Errorf("metadata '%.*s': array length exceeds file size",
                        static_cast<int>(e.key.size()), e.key.data());
        e.value.elems = c.here();
        if (e.value.elem_type == ValueType::kBool) {
          for (uint64_t i = 0; i < e.value.n_elems; ++i)
            if (e.value.elems[i] > 1) return Status::Error("invalid bool in array");
        }
        STRATA_RETURN_IF_ERROR(c.Skip(e.value.n_elems * es, "array data"));
      }
    } else {
      STRATA_RETURN_IF_ERROR(ReadScalar(c, vt, &e.value, "metadata value"));
    }
    meta_.push_back(std::move(e));
  }

  if (const MetaEntry* a = Find("general.alignment")) {
    if (a->value.type != ValueType::kUint32 && a->value.type != ValueType::kUint64 &&
        a->value.type != ValueType::kInt32)
      return Status::Error("general.alignment must be an integer");
    alignment_ = a->value.u;
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 || alignment_ > (1u << 20))
      return Errorf("general.alignment %" PRIu64 " is not a power of two <= 1 MiB", alignment_);
  }

  tensors_.reserve(std::min<uint64_t>(n_tensors, 1024));
  std::unordered_set<std::string_view> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo ti;
    STRATA_RETURN_IF_ERROR(c.ReadString(&ti.name, "tensor name"));
    if (ti.name.size() >= 64)
      return Errorf("tensor name '%.*s...' longer than 63 bytes", 20, ti.name.data());
    if (!names.insert(ti.name).second)
      return Errorf("duplicate tensor '%.*s'", static_cast<int>(ti.name.size()), ti.name.data());
    const std::string nm(ti.name);
    uint32_t n_dims = 0;
    STRATA_RETURN_IF_ERROR(c.Read(&n_dims, "tensor n_dims"));
    if (n_dims == 0 || n_dims > kMaxDims)
      return Errorf("tensor '%s': %u dimensions (1..4 allowed)", nm.c_str(), n_dims);
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      STRATA_RETURN_IF_ERROR(c.Read(&dim, "tensor dim"));
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Errorf("tensor '%s': invalid dimension %" PRIu64, nm.c_str(), dim);
      if (n_elems > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim)
        return Errorf("tensor '%s': element count overflows", nm.c_str());
      n_elems *= dim;
      ti.dims.push_back(static_cast<int64_t>(dim));
    }
    uint32_t type = 0;
    STRATA_RETURN_IF_ERROR(c.Read(&type, "tensor type"));
    const DTypeInfo* info = FindDType(type);
    if (!info) return Errorf("tensor '%s': unknown type id %u", nm.c_str(), type);
    ti.type = static_cast<DType>(type);
    if (ti.dims[0] % info->block_size != 0)
      return Errorf("tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                    nm.c_str(), static_cast<long long>(ti.dims[0]), info->name,
                    static_cast<long long>(info->block_size));
    const uint64_t blocks = n_elems / static_cast<uint64_t>(info->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(info->block_bytes))
      return Errorf("tensor '%s': byte size overflows", nm.c_str());
    ti.nbytes = blocks * static_cast<uint64_t>(info->block_bytes);
    STRATA_RETURN_IF_ERROR(c.Read(&ti.offset, "tensor offset"));
    if (ti.offset % alignment_ != 0)
      return Errorf("tensor '%s': offset %" PRIu64 " is not aligned to %" PRIu64, nm.c_str(),
                    ti.offset, alignment_);
    tensors_.push_back(std::move(ti));
  }

  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > size_ && !tensors_.empty())
    return Status::Error("truncated file: no tensor data section");
  const uint64_t data_size = size_ > data_offset_ ? size_ - data_offset_ : 0;
  for (TensorInfo& ti : tensors_) {
    if (ti.offset > data_size || ti.nbytes > data_size - ti.offset)
      return Errorf("tensor '%.*s': data [%" PRIu64 ", +%" PRIu64
                    ") lies outside the file "
                    "(data section is %" PRIu64 " bytes)",
                    static_cast<int>(ti.name.size()), ti.name.data(), ti.offset, ti.nbytes,
                    data_size);
    ti.data = base_ + data_offset_ + ti.offset;
  }
  // Tensors must not overlap.
  std::vector<const TensorInfo*> sorted;
  for (const TensorInfo& ti : tensors_) sorted.push_back(&ti);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1]->offset + sorted[i - 1]->nbytes > sorted[i]->offset)
      return Errorf("tensors '%.*s' and '%.*s' overlap",
                    static_cast<int>(sorted[i - 1]->name.size()), sorted[i - 1]->name.data(),
                    static_cast<int>(sorted[i]->name.size()), sorted[i]->name.data());
  }
  return Status::Ok();
}

const MetaEntry* File::Find(std::string_view key) const {
  for (const MetaEntry& e : meta_)
    if (e.key == key) return &e;
  return nullptr;
}

const TensorInfo* File::FindTensor(std::string_view name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {

Status Missing(std::string_view key) {
  return Errorf("metadata key '%.*s' is missing", static_cast<int>(key.size()), key.data());
}
Status WrongType(std::string_view key, const Value& v, const char* want) {
  return Errorf("metadata key '%.*s' has type %s, expected %s", static_cast<int>(key.size()),
                key.data(), ValueTypeName(v.type), want);
}
bool IsUnsigned(ValueType t) {
  return t == ValueType::kUint8 || t == ValueType::kUint16 || t == ValueType::kUint32 ||
         t == ValueType::kUint64;
}
bool IsSigned(ValueType t) {
  return t == ValueType::kInt8 || t == ValueType::kInt16 || t == ValueType::kInt32 ||
         t == ValueType::kInt64;
}

template <typename T>
int64_t LoadAs(const uint8_t* p) {
  T x;
  std::memcpy(&x, p, sizeof(T));
  return static_cast<int64_t>(x);
}

int64_t ReadArrayInt(const Value& v, uint64_t i) {
  const uint8_t* p = v.elems + i * ValueTypeSize(v.elem_type);
  switch (v.elem_type) {
    case ValueType::kUint8:
    case ValueType::kBool: return LoadAs<uint8_t>(p);
    case ValueType::kInt8: return LoadAs<int8_t>(p);
    case ValueType::kUint16: return LoadAs<uint16_t>(p);
    case ValueType::kInt16: return LoadAs<int16_t>(p);
    case ValueType::kUint32: return LoadAs<uint32_t>(p);
    case ValueType::kInt32: return LoadAs<int32_t>(p);
    case ValueType::kUint64: return LoadAs<uint64_t>(p);
    case ValueType::kInt64: return LoadAs<int64_t>(p);
    default: return 0;
  }
}

}  // namespace

Result<uint64_t> File::GetUint(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  if (IsUnsigned(e->value.type)) return e->value.u;
  if (IsSigned(e->value.type)) {
    if (e->value.i < 0) return WrongType(key, e->value, "a non-negative integer");
    return static_cast<uint64_t>(e->value.i);
  }
  return WrongType(key, e->value, "an integer");
}

Result<int64_t> File::GetInt(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  if (IsSigned(e->value.type)) return e->value.i;
  if (IsUnsigned(e->value.type)) {
    if (e->value.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return WrongType(key, e->value, "an int64");
    return static_cast<int64_t>(e->value.u);
  }
  return WrongType(key, e->value, "an integer");
}

Result<double> File::GetFloat(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  if (e->value.type == ValueType::kFloat32 || e->value.type == ValueType::kFloat64)
    return e->value.f;
  return WrongType(key, e->value, "a float");
}

Result<bool> File::GetBool(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  if (e->value.type != ValueType::kBool) return WrongType(key, e->value, "bool");
  return e->value.u != 0;
}

Result<std::string_view> File::GetString(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  if (e->value.type != ValueType::kString) return WrongType(key, e->value, "string");
  return e->value.s;
}

Result<std::vector<std::string_view>> File::GetStringArray(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  if (e->value.type != ValueType::kArray || e->value.elem_type != ValueType::kString)
    return WrongType(key, e->value, "array of string");
  return e->value.str_elems;
}

Result<std::vector<float>> File::GetFloatArray(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  const Value& v = e->value;
  if (v.type != ValueType::kArray ||
      (v.elem_type != ValueType::kFloat32 && v.elem_type != ValueType::kFloat64))
    return WrongType(key, v, "array of float");
  std::vector<float> out(v.n_elems);
  for (uint64_t i = 0; i < v.n_elems; ++i) {
    if (v.elem_type == ValueType::kFloat32) {
      std::memcpy(&out[i], v.elems + 4 * i, 4);
    } else {
      double d;
      std::memcpy(&d, v.elems + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  }
  return out;
}

Result<std::vector<int64_t>> File::GetIntArray(std::string_view key) const {
  const MetaEntry* e = Find(key);
  if (!e) return Missing(key);
  const Value& v = e->value;
  if (v.type != ValueType::kArray ||
      !(IsSigned(v.elem_type) || IsUnsigned(v.elem_type) || v.elem_type == ValueType::kBool))
    return WrongType(key, v, "array of integer");
  std::vector<int64_t> out(v.n_elems);
  for (uint64_t i = 0; i < v.n_elems; ++i) out[i] = ReadArrayInt(v, i);
  return out;
}

Result<uint64_t> File::GetUintOr(std::string_view key, uint64_t def) const {
  if (!Has(key)) return def;
  return GetUint(key);
}

Result<double> File::GetFloatOr(std::string_view key, double def) const {
  if (!Has(key)) return def;
  return GetFloat(key);
}

std::string ValueToString(const Value& v, size_t max_elems) {
  auto scalar = [](ValueType t, uint64_t u, int64_t i, double f, std::string_view s) {
    if (IsUnsigned(t)) return std::to_string(u);
    if (IsSigned(t)) return std::to_string(i);
    if (t == ValueType::kBool) return std::string(u ? "true" : "false");
    if (t == ValueType::kFloat32 || t == ValueType::kFloat64) return StrFormat("%g", f);
    std::string out = "\"";
    for (char ch : s) {
      if (ch == '\n') out += "\\n";
      else if (ch == '"') out += "\\\"";
      else out += ch;
    }
    return out + "\"";
  };
  if (v.type != ValueType::kArray) return scalar(v.type, v.u, v.i, v.f, v.s);
  std::string out = StrFormat("[%s x %llu] [", ValueTypeName(v.elem_type),
                              static_cast<unsigned long long>(v.n_elems));
  for (uint64_t k = 0; k < v.n_elems && k < max_elems; ++k) {
    if (k) out += ", ";
    if (v.elem_type == ValueType::kString) {
      out += scalar(ValueType::kString, 0, 0, 0, v.str_elems[k]);
    } else if (v.elem_type == ValueType::kFloat32) {
      float f;
      std::memcpy(&f, v.elems + 4 * k, 4);
      out += StrFormat("%g", f);
    } else if (v.elem_type == ValueType::kFloat64) {
      double f;
      std::memcpy(&f, v.elems + 8 * k, 8);
      out += StrFormat("%g", f);
    } else {
      out += std::to_string(ReadArrayInt(v, k));
    }
  }
  if (v.n_elems > max_elems) out += ", ...";
  return out + "]";
}

}  // namespace strata::gguf
