// GGUF v2/v3 reader (mmap, zero-copy tensor views, strict validation) and writer.
// Spec: header (magic "GGUF", version, n_tensors, n_kv), n_kv key/values, n_tensors tensor
// infos (name, n_dims, dims[ne0 first], type, offset), padding to `general.alignment`
// (default 32), then the tensor data section.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mmap.h"
#include "base/status.h"
#include "tensor/dtype.h"

namespace strata::gguf {

// GGUF metadata value types, one row each: enumerator, id in the file, name (ValueTypeName) and
// bytes of one value (ValueTypeSize: a bool is one byte; 0 for strings and arrays).
#define STRATA_GGUF_VALUE_TYPES(X)        \
  X(kUint8, 0, "u8", sizeof(uint8_t))     \
  X(kInt8, 1, "i8", sizeof(int8_t))       \
  X(kUint16, 2, "u16", sizeof(uint16_t))  \
  X(kInt16, 3, "i16", sizeof(int16_t))    \
  X(kUint32, 4, "u32", sizeof(uint32_t))  \
  X(kInt32, 5, "i32", sizeof(int32_t))    \
  X(kFloat32, 6, "f32", sizeof(float))    \
  X(kBool, 7, "bool", 1)                  \
  X(kString, 8, "string", 0)              \
  X(kArray, 9, "array", 0)                \
  X(kUint64, 10, "u64", sizeof(uint64_t)) \
  X(kInt64, 11, "i64", sizeof(int64_t))   \
  X(kFloat64, 12, "f64", sizeof(double))

enum class ValueType : uint32_t {
#define STRATA_GGUF_VALUE_TYPE_ENUMERATOR(name, id, text, size) name = id,
  STRATA_GGUF_VALUE_TYPES(STRATA_GGUF_VALUE_TYPE_ENUMERATOR)
#undef STRATA_GGUF_VALUE_TYPE_ENUMERATOR
};
// "u8", "string", ...; "?" for an unknown value.
const char* ValueTypeName(ValueType t);
// Bytes of one value of a scalar type; 0 for kString, kArray and an unknown value.
size_t ValueTypeSize(ValueType t);

// One metadata value. Scalars are decoded; strings point into the mapped file. Arrays keep
// their element type and count, with numeric elements as a raw little-endian view into the
// file and string elements decoded into views.
struct Value {
  ValueType type = ValueType::kUint8;
  uint64_t u = 0;      // unsigned integers and bool
  int64_t i = 0;       // signed integers
  double f = 0;        // float32 / float64
  std::string_view s;  // string
  // arrays
  ValueType elem_type = ValueType::kUint8;
  uint64_t n_elems = 0;
  const uint8_t* elems = nullptr;           // numeric arrays: n_elems * size(elem_type) bytes
  std::vector<std::string_view> str_elems;  // string arrays
};

struct MetaEntry {
  std::string_view key;
  Value value;
};

struct TensorInfo {
  std::string_view name;
  std::vector<int64_t> dims;  // dims[0] is the row length (contiguous), as in ggml's ne
  DType type = DType::F32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t n_elements() const;
  int64_t n_rows() const { return dims.empty() ? 0 : n_elements() / dims[0]; }
};

class File {
 public:
  // Maps and validates a file.
  static Result<std::shared_ptr<File>> Open(const std::string& path);
  // Validates an in-memory image (fuzzing, tests). `data` must outlive the File.
  static Result<std::shared_ptr<File>> Parse(const uint8_t* data, size_t size);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section
  size_t file_size() const { return size_; }
  const uint8_t* base() const { return base_; }

  const std::vector<MetaEntry>& metadata() const { return meta_; }
  const MetaEntry* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Typed getters. Error when missing or of an incompatible type. Integers of any width
  // convert when the value fits; GetFloat accepts float32/float64.
  Result<uint64_t> GetUint(std::string_view key) const;
  Result<int64_t> GetInt(std::string_view key) const;
  Result<double> GetFloat(std::string_view key) const;
  Result<bool> GetBool(std::string_view key) const;
  Result<std::string_view> GetString(std::string_view key) const;
  Result<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  Result<std::vector<float>> GetFloatArray(std::string_view key) const;
  Result<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  // With defaults when the key is absent (still an error when present with a wrong type).
  Result<uint64_t> GetUintOr(std::string_view key, uint64_t def) const;
  Result<double> GetFloatOr(std::string_view key, double def) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;

 private:
  File() = default;
  Status ParseImpl();

  std::shared_ptr<MappedFile> map_;  // null for Parse()
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<MetaEntry> meta_;
  std::vector<TensorInfo> tensors_;
};

// Renders a value for `strata inspect` (arrays abbreviated after `max_elems`).
std::string ValueToString(const Value& v, size_t max_elems = 8);

// Writes GGUF v3. Metadata keeps insertion order; setting a key again replaces it. Tensor data
// is produced at Write() time by each tensor's fill callback, one tensor at a time, so files
// larger than memory can be written.
class Writer {
 public:
  using Fill = std::function<Status(uint8_t* dst, uint64_t nbytes)>;

  void SetUint8(const std::string& key, uint8_t v);
  void SetInt8(const std::string& key, int8_t v);
  void SetUint16(const std::string& key, uint16_t v);
  void SetInt16(const std::string& key, int16_t v);
  void SetUint32(const std::string& key, uint32_t v);
  void SetInt32(const std::string& key, int32_t v);
  void SetUint64(const std::string& key, uint64_t v);
  void SetInt64(const std::string& key, int64_t v);
  void SetFloat32(const std::string& key, float v);
  void SetFloat64(const std::string& key, double v);
  void SetBool(const std::string& key, bool v);
  void SetString(const std::string& key, const std::string& v);
  void SetStringArray(const std::string& key, const std::vector<std::string>& v);
  void SetFloat32Array(const std::string& key, const std::vector<float>& v);
  void SetInt32Array(const std::string& key, const std::vector<int32_t>& v);
  // Copies an entry read from another file verbatim (any type, arrays included).
  void CopyEntry(const MetaEntry& e);
  void Remove(const std::string& key);

  void SetAlignment(uint32_t alignment);  // also writes general.alignment when != 32

  // dims[0] is the row length. Error on invalid dims/type or a duplicate name.
  Status AddTensor(const std::string& name, const std::vector<int64_t>& dims, DType type,
                   Fill fill);
  Status AddTensorData(const std::string& name, const std::vector<int64_t>& dims, DType type,
                       std::vector<uint8_t> data);

  Status Write(const std::string& path) const;  // writes to path.tmp then renames

 private:
  struct KV {
    std::string key;
    std::vector<uint8_t> encoded;  // type tag + payload, as in the file
  };
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    DType type;
    uint64_t nbytes;
    Fill fill;
  };
  void Put(const std::string& key, std::vector<uint8_t> encoded);
  std::vector<KV> kvs_;
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace strata::gguf
