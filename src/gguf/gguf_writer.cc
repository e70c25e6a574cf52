#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include "gguf/gguf.h"

namespace strata::gguf {
namespace {

template <typename T>
void Append(std::vector<uint8_t>& buf, T v) {
  const size_t at = buf.size();
  buf.resize(at + sizeof(T));
  std::memcpy(buf.data() + at, &v, sizeof(T));
}

void AppendString(std::vector<uint8_t>& buf, std::string_view s) {
  Append<uint64_t>(buf, s.size());
  buf.insert(buf.end(), s.begin(), s.end());
}

template <typename T>
std::vector<uint8_t> Scalar(ValueType t, T v) {
  std::vector<uint8_t> b;
  Append<uint32_t>(b, static_cast<uint32_t>(t));
  Append<T>(b, v);
  return b;
}

template <typename T>
std::vector<uint8_t> NumericArray(ValueType elem_type, const std::vector<T>& v) {
  std::vector<uint8_t> b;
  Append<uint32_t>(b, static_cast<uint32_t>(ValueType::kArray));
  Append<uint32_t>(b, static_cast<uint32_t>(elem_type));
  Append<uint64_t>(b, v.size());
  for (T x : v) Append<T>(b, x);
  return b;
}

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};

}  // namespace

void Writer::Put(const std::string& key, std::vector<uint8_t> encoded) {
  for (KV& kv : kvs_) {
    if (kv.key == key) {
      kv.encoded = std::move(encoded);
      return;
    }
  }
  kvs_.push_back({key, std::move(encoded)});
}

void Writer::SetUint8(const std::string& k, uint8_t v) { Put(k, Scalar(ValueType::kUint8, v)); }
void Writer::SetInt8(const std::string& k, int8_t v) { Put(k, Scalar(ValueType::kInt8, v)); }
void Writer::SetUint16(const std::string& k, uint16_t v) { Put(k, Scalar(ValueType::kUint16, v)); }
void Writer::SetInt16(const std::string& k, int16_t v) { Put(k, Scalar(ValueType::kInt16, v)); }
void Writer::SetUint32(const std::string& k, uint32_t v) { Put(k, Scalar(ValueType::kUint32, v)); }
void Writer::SetInt32(const std::string& k, int32_t v) { Put(k, Scalar(ValueType::kInt32, v)); }
void Writer::SetUint64(const std::string& k, uint64_t v) { Put(k, Scalar(ValueType::kUint64, v)); }
void Writer::SetInt64(const std::string& k, int64_t v) { Put(k, Scalar(ValueType::kInt64, v)); }
void Writer::SetFloat32(const std::string& k, float v) { Put(k, Scalar(ValueType::kFloat32, v)); }
void Writer::SetFloat64(const std::string& k, double v) { Put(k, Scalar(ValueType::kFloat64, v)); }
void Writer::SetBool(const std::string& k, bool v) {
  Put(k, Scalar(ValueType::kBool, static_cast<uint8_t>(v ? 1 : 0)));
}

void Writer::SetString(const std::string& k, const std::string& v) {
  std::vector<uint8_t> b;
  Append<uint32_t>(b, static_cast<uint32_t>(ValueType::kString));
  AppendString(b, v);
  Put(k, std::move(b));
}

void Writer::SetStringArray(const std::string& k, const std::vector<std::string>& v) {
  std::vector<uint8_t> b;
  Append<uint32_t>(b, static_cast<uint32_t>(ValueType::kArray));
  Append<uint32_t>(b, static_cast<uint32_t>(ValueType::kString));
  Append<uint64_t>(b, v.size());
  for (const auto& s : v) AppendString(b, s);
  Put(k, std::move(b));
}

void Writer::SetFloat32Array(const std::string& k, const std::vector<float>& v) {
  Put(k, NumericArray(ValueType::kFloat32, v));
}

void Writer::SetInt32Array(const std::string& k, const std::vector<int32_t>& v) {
  Put(k, NumericArray(ValueType::kInt32, v));
}

void Writer::CopyEntry(const MetaEntry& e) {
  const std::string key(e.key);
  const Value& v = e.value;
  std::vector<uint8_t> b;
  Append<uint32_t>(b, static_cast<uint32_t>(v.type));
  switch (v.type) {
    case ValueType::kString: AppendString(b, v.s); break;
    case ValueType::kArray:
      Append<uint32_t>(b, static_cast<uint32_t>(v.elem_type));
      Append<uint64_t>(b, v.n_elems);
      if (v.elem_type == ValueType::kString) {
        for (auto s : v.str_elems) AppendString(b, s);
      } else {
        b.insert(b.end(), v.elems, v.elems + v.n_elems * ValueTypeSize(v.elem_type));
      }
      break;
    case ValueType::kFloat32: Append<float>(b, static_cast<float>(v.f)); break;
    case ValueType::kFloat64: Append<double>(b, v.f); break;
    case ValueType::kUint8:
    case ValueType::kBool: Append<uint8_t>(b, static_cast<uint8_t>(v.u)); break;
    case ValueType::kInt8: Append<int8_t>(b, static_cast<int8_t>(v.i)); break;
    case ValueType::kUint16: Append<uint16_t>(b, static_cast<uint16_t>(v.u)); break;
    case ValueType::kInt16: Append<int16_t>(b, static_cast<int16_t>(v.i)); break;
    case ValueType::kUint32: Append<uint32_t>(b, static_cast<uint32_t>(v.u)); break;
    case ValueType::kInt32: Append<int32_t>(b, static_cast<int32_t>(v.i)); break;
    case ValueType::kUint64: Append<uint64_t>(b, v.u); break;
    case ValueType::kInt64: Append<int64_t>(b, v.i); break;
  }
  if (key == "general.alignment") alignment_ = static_cast<uint32_t>(v.u);
  Put(key, std::move(b));
}

void Writer::Remove(const std::string& key) {
  for (size_t i = 0; i < kvs_.size(); ++i) {
    if (kvs_[i].key == key) {
      kvs_.erase(kvs_.begin() + static_cast<long>(i));
      return;
    }
  }
}

void Writer::SetAlignment(uint32_t alignment) {
  alignment_ = alignment;
  if (alignment != 32) SetUint32("general.alignment", alignment);
  else Remove("general.alignment");
}

Status Writer::AddTensor(const std::string& name, const std::vector<int64_t>& dims, DType type,
                         Fill fill) {
  if (name.empty() || name.size() >= 64)
    return Errorf("tensor name '%s' must be 1..63 bytes", name.c_str());
  for (const Tensor& t : tensors_)
    if (t.name == name) return Errorf("duplicate tensor '%s'", name.c_str());
  if (dims.empty() || dims.size() > 4)
    return Errorf("tensor '%s': 1..4 dims required", name.c_str());
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d <= 0) return Errorf("tensor '%s': dims must be positive", name.c_str());
    if (n > std::numeric_limits<int64_t>::max() / d)
      return Errorf("tensor '%s': element count overflows", name.c_str());
    n *= d;
  }
  STRATA_ASSIGN_OR_RETURN(uint64_t row, RowBytes(type, dims[0]));
  tensors_.push_back({name, dims, type, row * static_cast<uint64_t>(n / dims[0]), std::move(fill)});
  return Status::Ok();
}

Status Writer::AddTensorData(const std::string& name, const std::vector<int64_t>& dims, DType type,
                             std::vector<uint8_t> data) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(data));
  return AddTensor(name, dims, type, [shared, nm = name](uint8_t* dst, uint64_t nbytes) -> Status {
    if (shared->size() != nbytes)
      return Errorf("tensor '%s': %zu bytes given, %llu expected", nm.c_str(), shared->size(),
                    static_cast<unsigned long long>(nbytes));
    std::memcpy(dst, shared->data(), nbytes);
    return Status::Ok();
  });
}

Status Writer::Write(const std::string& path) const {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 || alignment_ > (1u << 20))
    return Errorf("cannot write '%s': alignment %u is not a power of two <= 1 MiB", path.c_str(),
                  alignment_);
  const std::string tmp = path + ".tmp";
  // Writes the whole file to `tmp`; the caller renames it or removes it on error.
  auto write_tmp = [&]() -> Status {
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
    if (!f) return Errorf("cannot create '%s': %s", tmp.c_str(), std::strerror(errno));
    auto put = [&](const void* p, size_t n) -> Status {
      if (n && std::fwrite(p, 1, n, f.get()) != n)
        return Errorf("write to '%s' failed: %s", tmp.c_str(), std::strerror(errno));
      return Status::Ok();
    };

    std::vector<uint8_t> head;
    head.insert(head.end(), {'G', 'G', 'U', 'F'});
    Append<uint32_t>(head, 3);
    Append<uint64_t>(head, tensors_.size());
    Append<uint64_t>(head, kvs_.size());
    for (const KV& kv : kvs_) {
      AppendString(head, kv.key);
      head.insert(head.end(), kv.encoded.begin(), kv.encoded.end());
    }
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const Tensor& t : tensors_) {
      AppendString(head, t.name);
      Append<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
      for (int64_t d : t.dims) Append<uint64_t>(head, static_cast<uint64_t>(d));
      Append<uint32_t>(head, static_cast<uint32_t>(t.type));
      Append<uint64_t>(head, offset);
      offsets.push_back(offset);
      offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    }
    head.resize((head.size() + alignment_ - 1) / alignment_ * alignment_, 0);
    STRATA_RETURN_IF_ERROR(put(head.data(), head.size()));

    std::vector<uint8_t> buf;
    static const uint8_t zeros[64] = {0};
    for (const Tensor& t : tensors_) {
      buf.assign(t.nbytes, 0);
      Status st = t.fill(buf.data(), t.nbytes);
      if (!st.ok()) return st.With("writing tensor '" + t.name + "'");
      STRATA_RETURN_IF_ERROR(put(buf.data(), buf.size()));
      uint64_t pad = (t.nbytes + alignment_ - 1) / alignment_ * alignment_ - t.nbytes;
      while (pad > 0) {
        const size_t n = pad > sizeof(zeros) ? sizeof(zeros) : static_cast<size_t>(pad);
        STRATA_RETURN_IF_ERROR(put(zeros, n));
        pad -= n;
      }
    }
    if (std::fflush(f.get()) != 0)
      return Errorf("flush of '%s' failed: %s", tmp.c_str(), std::strerror(errno));
    std::FILE* raw = f.release();
    if (std::fclose(raw) != 0)
      return Errorf("close of '%s' failed: %s", tmp.c_str(), std::strerror(errno));
    return Status::Ok();
  };
  Status st = write_tmp();
  if (!st.ok()) {
    std::remove(tmp.c_str());
    return st;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    st = Errorf("cannot rename '%s' to '%s': %s", tmp.c_str(), path.c_str(), std::strerror(errno));
    std::remove(tmp.c_str());
    return st;
  }
  return Status::Ok();
}

}  // namespace strata::gguf
