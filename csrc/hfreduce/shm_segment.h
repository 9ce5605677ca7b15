// A POSIX shared-memory segment (shm_open + mmap). The creator owns the name: it unlinks it as
// soon as every local rank has mapped the segment (unlink()), so a crash afterwards leaks nothing;
// the destructor unlinks too if that never happened. Not thread-safe; one owner thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "hfreduce/error.h"

namespace hfreduce {

class ShmSegment {
 public:
  // Creates `name` (must not exist) with `bytes` (sparse until touched) and maps it.
  static std::unique_ptr<ShmSegment> create(const std::string& name, size_t bytes);
  // Maps an existing `name`, waiting until the creator has made it and sized it to `bytes`.
  static std::unique_ptr<ShmSegment> attach(const std::string& name, size_t bytes, Deadline deadline);
  ~ShmSegment();

  void* data() const { return data_; }
  size_t size() const { return bytes_; }
  const std::string& name() const { return name_; }
  // Removes the name from /dev/shm (mappings stay valid). Idempotent.
  void unlink();
  // Faults in [offset, offset+bytes) so the first collective does not pay for page faults.
  void pretouch(size_t offset, size_t bytes);

 private:
  ShmSegment(std::string name, void* data, size_t bytes, bool owner)
      : name_(std::move(name)), data_(data), bytes_(bytes), owner_(owner) {}
  std::string name_;
  void* data_;
  size_t bytes_;
  bool owner_;
  bool unlinked_ = false;
};

}  // namespace hfreduce
