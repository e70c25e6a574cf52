#include "base/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace strata {

Result<std::shared_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errorf("cannot open '%s': %s", path.c_str(), std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Errorf("cannot stat '%s': %s", path.c_str(), std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Errorf("'%s' is not a regular file", path.c_str());
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return Errorf("cannot mmap '%s': %s", path.c_str(), std::strerror(e));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ && size_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

static size_t ReadStatusKb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t klen = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, klen, key) == 0) return std::stoull(line.substr(klen)) * 1024;
  }
  return 0;
}

Result<std::shared_ptr<uint8_t>> AllocateHugePages(uint64_t n) {
  // Over-allocated by one huge page so that the region can start on a huge-page boundary.
  const uint64_t span = (n + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes + kHugePageBytes;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    return Errorf("cannot allocate %.1f MiB: %s", static_cast<double>(span) / 1048576.0,
                  std::strerror(errno));
  const uint64_t raw_at = reinterpret_cast<uint64_t>(raw);
  uint8_t* start = static_cast<uint8_t*>(raw) +
                   ((raw_at + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes - raw_at);
  ::madvise(start, span - kHugePageBytes, MADV_HUGEPAGE);
  return std::shared_ptr<uint8_t>(start, [raw, span](uint8_t*) { ::munmap(raw, span); });
}

size_t CurrentRssBytes() { return ReadStatusKb("VmRSS:"); }
size_t PeakRssBytes() { return ReadStatusKb("VmHWM:"); }

void ReleaseMappedPages(const uint8_t* p, uint64_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  const uintptr_t begin = (at + page - 1) / page * page;
  const uintptr_t end = (at + n) / page * page;
  if (end > begin)  // p + (begin - at): pointer arithmetic within the range
    ::madvise(const_cast<uint8_t*>(p) + (begin - at), end - begin, MADV_DONTNEED);
}

}  // namespace strata
