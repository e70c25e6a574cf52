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

// Block sizes and bytes per block, as in ggml's type traits.
constexpr Entry kTable[] = {
    {0, {"F32", 1, 4, true}},          {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", 32, 18, true}},       {3, {"Q4_1", 32, 20, false}},
    {6, {"Q5_0", 32, 22, false}},      {7, {"Q5_1", 32, 24, false}},
    {8, {"Q8_0", 32, 34, true}},       {9, {"Q8_1", 32, 36, false}},
    {10, {"Q2_K", 256, 84, false}},    {11, {"Q3_K", 256, 110, false}},
    {12, {"Q4_K", 256, 144, true}},    {13, {"Q5_K", 256, 176, true}},
    {14, {"Q6_K", 256, 210, true}},    {15, {"Q8_K", 256, 292, false}},
    {16, {"IQ2_XXS", 256, 66, false}}, {17, {"IQ2_XS", 256, 74, false}},
    {18, {"IQ3_XXS", 256, 98, false}}, {19, {"IQ1_S", 256, 50, false}},
    {20, {"IQ4_NL", 32, 18, false}},   {21, {"IQ3_S", 256, 110, false}},
    {22, {"IQ2_S", 256, 82, false}},   {23, {"IQ4_XS", 256, 136, false}},
    {24, {"I8", 1, 1, false}},         {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},        {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},        {29, {"IQ1_M", 256, 56, false}},
    {30, {"BF16", 1, 2, true}},        {34, {"TQ1_0", 256, 54, false}},
    {35, {"TQ2_0", 256, 66, false}},   {39, {"MXFP4", 32, 17, false}},
};

}  // namespace

const DTypeInfo* FindDType(uint32_t id) {
  for (const Entry& e : kTable)
    if (e.id == id) return &e.info;
  return nullptr;
}

const DTypeInfo& Info(DType t) {
  const DTypeInfo* i = FindDType(static_cast<uint32_t>(t));
  return *i;  // every DType enumerator is in the table
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
