// mvar/io/atomic_write.hpp — write a file atomically: the bytes go to a temporary file in the
// same directory, which is renamed over the target only once complete and flushed. A failed or
// interrupted write leaves no partial file behind.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include <unistd.h>

#include "mvar/core/error.hpp"

namespace mvar {

/// writer(FILE*) must write the content and return true on success.
inline void atomic_write(const std::string& path, const std::function<bool(std::FILE*)>& writer) {
  const std::string tmp = concat(path, ".tmp.", ::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(concat(path, ": cannot write: ", std::strerror(errno)));
  bool ok = false;
  try {
    ok = writer(f);
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int e = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(concat(path, ": write failed: ", std::strerror(e ? e : EIO)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e2 = errno;
    std::remove(tmp.c_str());
    throw Error(concat(path, ": cannot rename temporary file into place: ", std::strerror(e2)));
  }
}

}  // namespace mvar
