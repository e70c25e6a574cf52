// QuantizeModel: streams a float GGUF through the planner's per-tensor types into a new GGUF.
#include "quant/quantize.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>

#include "base/mmap.h"
#include "base/progress.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "gguf/gguf.h"
#include "tensor/quant.h"

namespace strata {
namespace {

// llama.cpp's GGML_QNT_VERSION, written as general.quantization_version.
constexpr uint32_t kQuantizationVersion = 2;

Result<QuantModelInfo> ReadModelInfo(const gguf::File& f) {
  QuantModelInfo m;
  auto arch = f.GetString("general.architecture");
  if (!arch.ok()) return arch.status().With("not a model file");
  m.arch = std::string(arch.value());
  if (m.arch != "qwen2" && m.arch != "llama")
    return Errorf("architecture '%s' is not supported by strata quantize (qwen2, llama)",
                  m.arch.c_str());
  STRATA_ASSIGN_OR_RETURN(uint64_t n_layers, f.GetUint(m.arch + ".block_count"));
  STRATA_ASSIGN_OR_RETURN(uint64_t n_heads, f.GetUintOr(m.arch + ".attention.head_count", 0));
  STRATA_ASSIGN_OR_RETURN(uint64_t n_kv, f.GetUintOr(m.arch + ".attention.head_count_kv", n_heads));
  STRATA_ASSIGN_OR_RETURN(uint64_t n_expert, f.GetUintOr(m.arch + ".expert_count", 0));
  if (n_expert > 1)
    return Errorf("mixture-of-experts models (%llu experts) are not supported by strata quantize",
                  static_cast<unsigned long long>(n_expert));
  if (n_layers == 0 || n_layers > 100000) return Status::Error("bad block_count");
  m.n_layers = static_cast<int>(n_layers);
  m.n_heads = static_cast<int>(n_heads);
  m.n_kv_heads = static_cast<int>(n_kv);
  return m;
}

// Converts rows of `src` (type `from`) into `dst` (type `to`): row-parallel over the pool.
void ConvertTensor(ThreadPool& pool, const uint8_t* src, DType from, uint8_t* dst, DType to,
                   int64_t ncols, int64_t nrows) {
  const uint64_t src_row = RowBytesUnchecked(from, ncols);
  const uint64_t dst_row = RowBytesUnchecked(to, ncols);
  pool.ParallelFor(nrows, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(static_cast<size_t>(ncols));
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* s = src + static_cast<uint64_t>(r) * src_row;
      const float* x;
      if (from == DType::F32 && reinterpret_cast<uintptr_t>(s) % alignof(float) == 0) {
        x = reinterpret_cast<const float*>(s);
      } else if (from == DType::F32) {  // an unusual alignment: copy the row out
        std::memcpy(scratch.data(), s, static_cast<size_t>(ncols) * sizeof(float));
        x = scratch.data();
      } else {
        DequantizeRow(from, s, scratch.data(), ncols);
        x = scratch.data();
      }
      QuantizeRow(to, x, dst + static_cast<uint64_t>(r) * dst_row, ncols);
    }
  });
}

std::string DimsString(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s;
}

}  // namespace

Result<QuantizeStats> QuantizeModel(const std::string& in_path, const std::string& out_path,
                                    QuantFileType ftype, const QuantizeOptions& opts) {
  Timer timer;
  auto fr = gguf::File::Open(in_path);
  if (!fr.ok()) return fr.status().With("reading '" + in_path + "'");
  std::shared_ptr<gguf::File> file = fr.value();
  auto info = ReadModelInfo(*file);
  if (!info.ok()) return info.status().With("'" + in_path + "'");

  std::vector<QuantTensorDesc> descs;
  std::map<std::string, const gguf::TensorInfo*, std::less<>> by_name;
  for (const gguf::TensorInfo& t : file->tensors()) {
    descs.push_back({std::string(t.name), t.dims, t.type});
    by_name[std::string(t.name)] = &t;
  }
  auto planr = PlanQuantization(descs, info.value(), ftype);
  if (!planr.ok()) return planr.status().With("'" + in_path + "'");
  const std::vector<QuantTensorPlan>& plan = planr.value();
  for (const QuantTensorPlan& p : plan) {
    if (p.from != p.to && (!CanDequantize(p.from) || !CanQuantize(p.to)))
      return Errorf("tensor '%s': cannot convert %s to %s", p.name.c_str(), DTypeName(p.from),
                    DTypeName(p.to));
  }

  gguf::Writer w;
  for (const gguf::MetaEntry& e : file->metadata()) w.CopyEntry(e);
  if (file->alignment() != 32) w.SetAlignment(static_cast<uint32_t>(file->alignment()));
  // As llama-quantize: these two are (re)set last; split keys do not apply to one file.
  w.Remove("general.quantization_version");
  w.SetUint32("general.quantization_version", kQuantizationVersion);
  w.Remove("general.file_type");
  w.SetUint32("general.file_type", static_cast<uint32_t>(ftype));
  w.Remove("split.no");
  w.Remove("split.count");
  w.Remove("split.tensors.count");

  auto pool = std::make_shared<ThreadPool>(opts.threads);
  auto stats = std::make_shared<QuantizeStats>();
  stats->n_tensors = static_cast<int>(plan.size());
  const int n_total = static_cast<int>(plan.size());
  int index = 0;
  uint64_t total_in = 0;
  for (const QuantTensorPlan& p : plan) total_in += by_name.at(p.name)->nbytes;
  std::shared_ptr<Progress> progress;
  if (opts.progress) progress = std::make_shared<Progress>("quantizing " + out_path, total_in);
  for (const QuantTensorPlan& p : plan) {
    const gguf::TensorInfo* t = by_name.at(p.name);
    const int64_t ncols = t->dims[0];
    const int64_t nrows = t->n_rows();
    const uint64_t out_bytes = RowBytesUnchecked(p.to, ncols) * static_cast<uint64_t>(nrows);
    stats->bytes_in += t->nbytes;
    stats->bytes_out += out_bytes;
    stats->n_elements += t->n_elements();
    if (p.from != p.to) ++stats->n_quantized;
    if (p.fallback) ++stats->n_fallback;
    ++index;
    auto log = opts.log;
    const std::string line =
        StrFormat("[%4d/%4d] %-32s [%s] %s -> %s%s", index, n_total, p.name.c_str(),
                  DimsString(p.dims).c_str(), DTypeName(p.from), DTypeName(p.to),
                  p.fallback ? " (row length fallback)" : "");
    STRATA_RETURN_IF_ERROR(w.AddTensor(
        p.name, p.dims, p.to,
        [t, p, pool, log, line, ncols, nrows, progress](uint8_t* dst, uint64_t nbytes) -> Status {
          if (log) log(line);
          if (p.from == p.to) {
            if (nbytes != t->nbytes) return Status::Error("size mismatch copying a tensor");
            std::memcpy(dst, t->data, nbytes);
          } else {
            ConvertTensor(*pool, t->data, p.from, dst, p.to, ncols, nrows);
          }
          ReleaseMappedPages(t->data, t->nbytes);  // resident memory does not grow
          if (progress) progress->Add(t->nbytes);
          return Status::Ok();
        }));
  }
  Status st = w.Write(out_path);
  if (progress) progress->Finish();
  if (!st.ok()) return st.With("writing '" + out_path + "'");
  stats->seconds = timer.ElapsedMs() / 1000.0;
  return *stats;
}

}  // namespace strata
