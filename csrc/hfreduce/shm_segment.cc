#include "hfreduce/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace hfreduce {

namespace {
std::string errno_str() { return std::strerror(errno); }
}  // namespace

std::unique_ptr<ShmSegment> ShmSegment::create(const std::string& name, size_t bytes) {
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) throw Error(ErrorKind::kUsage, "shm_open(" + name + ") failed: " + errno_str());
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    std::string e = errno_str();
    close(fd);
    shm_unlink(name.c_str());
    throw Error(ErrorKind::kUsage, "ftruncate(" + name + ") failed: " + e);
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    std::string e = errno_str();
    shm_unlink(name.c_str());
    throw Error(ErrorKind::kUsage, "mmap(" + name + ") failed: " + e);
  }
  return std::unique_ptr<ShmSegment>(new ShmSegment(name, p, bytes, true));
}

std::unique_ptr<ShmSegment> ShmSegment::attach(const std::string& name, size_t bytes, Deadline deadline) {
  while (true) {
    int fd = shm_open(name.c_str(), O_RDWR, 0600);
    if (fd >= 0) {
      struct stat st;
      if (fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) >= bytes) {
        void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) throw Error(ErrorKind::kUsage, "mmap(" + name + ") failed: " + errno_str());
        return std::unique_ptr<ShmSegment>(new ShmSegment(name, p, bytes, false));
      }
      close(fd);
    }
    if (deadline.expired())
      throw Error(ErrorKind::kTimeout, "shared-memory segment " + name + " was not created by the node leader in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void ShmSegment::unlink() {
  if (owner_ && !unlinked_) {
    shm_unlink(name_.c_str());
    unlinked_ = true;
  }
}

void ShmSegment::pretouch(size_t offset, size_t bytes) {
  char* p = static_cast<char*>(data_) + offset;
#ifdef MADV_POPULATE_WRITE
  if (madvise(p, bytes, MADV_POPULATE_WRITE) == 0) return;
#endif
  const long page = sysconf(_SC_PAGESIZE);
  for (size_t i = 0; i < bytes; i += page) reinterpret_cast<volatile char*>(p)[i] = p[i];
}

ShmSegment::~ShmSegment() {
  unlink();
  if (data_) munmap(data_, bytes_);
}

}  // namespace hfreduce
