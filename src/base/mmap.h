// Read-only memory-mapped file. Move-only; unmaps on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"

namespace strata {

class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Drops this process's mapping of the whole pages inside [p, p + n) of a read-only file
// mapping (MADV_DONTNEED): the page cache keeps them, the resident set no longer counts them,
// and a later read faults them back in. Partial pages at either end stay mapped (neighbouring
// data may still be in use).
void ReleaseMappedPages(const uint8_t* p, uint64_t n);

// Transparent huge pages (2 MiB on x86-64 and most arm64 kernels).
constexpr uint64_t kHugePageBytes = uint64_t{2} << 20;

// Zero-filled, private read-write memory of at least n bytes (n > 0) that starts on a
// kHugePageBytes boundary, with MADV_HUGEPAGE asked for the whole of it (advice: without
// transparent huge pages the pages are plain). The pointer is that start; the mapping is
// released with the last copy.
Result<std::shared_ptr<uint8_t>> AllocateHugePages(uint64_t n);

// Resident set size of this process right now, and its peak, in bytes (from /proc/self/status).
size_t CurrentRssBytes();
size_t PeakRssBytes();

}  // namespace strata
