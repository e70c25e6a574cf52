#include "tensor/dtype.h"

#include <algorithm>
#include <cctype>
#include <limits>

namespace strata {
namespace {

struct Entry {
  uint32_t id;
  DTypeInfo info;
};

constexpr Entry kTable[] = {
#define STRATA_DTYPE_ENTRY(name, id, block_size, block_bytes, compute) \
  {id, {#name, block_size, block_bytes, compute}},
    STRATA_DTYPES(STRATA_DTYPE_ENTRY)
#undef STRATA_DTYPE_ENTRY
};

}  // namespace

const DTypeInfo* FindDType(uint32_t id) {
  for (const Entry& e : kTable)
    if (e.id == id) return &e.info;
  return nullptr;
}

const DTypeInfo& Info(DType t) {
  const DTypeInfo* i = FindDType(static_cast<uint32_t>(t));
  return *i;  // kTable and DType are made from the same list
}

Result<DType> ParseDType(const std::string& name) {
  std::string up = name;
  std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const Entry& e : kTable)
    if (up == e.info.name) return static_cast<DType>(e.id);
  return Errorf("unknown tensor type '%s'", name.c_str());
}

Result<uint64_t> RowBytes(DType t, int64_t n) {
  const DTypeInfo& i = Info(t);
  if (n < 0 || n % i.block_size != 0)
    return Errorf("%lld elements is not a multiple of the %s block size %lld",
                  static_cast<long long>(n), i.name, static_cast<long long>(i.block_size));
  const uint64_t blocks = static_cast<uint64_t>(n / i.block_size);
  if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(i.block_bytes))
    return Status::Error("tensor row size overflows");
  return blocks * static_cast<uint64_t>(i.block_bytes);
}

}  // namespace strata
