// mvar/io/atomic_write.hpp — write files atomically: the bytes go to a temporary file in the same
// directory, which is renamed over the target only once complete and flushed. A failed or
// interrupted write leaves no partial file behind.
//
// atomic_write writes one file. atomic_write_all writes several as one unit (e.g. the numbered
// images of a batch): every file goes to its temporary first, the targets are checked, and only
// then is anything renamed into place; on failure every temporary is removed and nothing of the
// batch is left, so a batch is never half written.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "mvar/core/error.hpp"

namespace mvar {

namespace detail {

/// Writes the content to a temporary file next to `path` (flushed and fsync'ed) and returns its
/// name. On failure the temporary is removed and mvar::Error names `path`.
inline std::string write_temporary(const std::string& path, const std::function<bool(std::FILE*)>& writer) {
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
  return tmp;
}

inline Error rename_error(const std::string& path, int err) {
  return Error(concat(path, ": cannot rename temporary file into place: ", std::strerror(err)));
}

/// Renames a finished temporary over `path`; on failure removes the temporary and throws.
inline void commit_temporary(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    throw rename_error(path, e);
  }
}

}  // namespace detail

/// writer(FILE*) must write the content and return true on success.
inline void atomic_write(const std::string& path, const std::function<bool(std::FILE*)>& writer) {
  detail::commit_temporary(detail::write_temporary(path, writer), path);
}

/// Writes paths[i] with writer(FILE*, i) for every i, all or nothing: all temporaries are written
/// first, then every target is checked (a directory in the way is refused), then all are renamed.
/// On failure every temporary is removed and mvar::Error says which file failed and that nothing
/// was written (`what` names the files in the message: "images"). Should a rename itself fail
/// after the checks (a race), the files already renamed are removed again.
inline void atomic_write_all(const std::vector<std::string>& paths,
                             const std::function<bool(std::FILE*, std::size_t)>& writer, const std::string& what = "files") {
  std::vector<std::string> tmps;
  auto remove_all = [](const std::vector<std::string>& files, std::size_t from = 0) {
    for (std::size_t i = from; i < files.size(); ++i) std::remove(files[i].c_str());
  };
  const std::string none = concat(" — nothing was written (none of the ", paths.size(), " ", what, ")");
  try {
    for (std::size_t i = 0; i < paths.size(); ++i)
      tmps.push_back(detail::write_temporary(paths[i], [&](std::FILE* f) { return writer(f, i); }));
    for (const auto& p : paths) {
      struct stat st {};
      if (::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw detail::rename_error(p, EISDIR);
    }
  } catch (const Error& e) {
    remove_all(tmps);
    throw Error(concat(e.what(), none));
  } catch (...) {
    remove_all(tmps);
    throw;
  }
  for (std::size_t i = 0; i < paths.size(); ++i) {
    if (std::rename(tmps[i].c_str(), paths[i].c_str()) != 0) {
      const int e = errno;
      remove_all(tmps, i);
      remove_all(std::vector<std::string>(paths.begin(), paths.begin() + std::ptrdiff_t(i)));
      throw Error(concat(detail::rename_error(paths[i], e).what(), " — the batch was rolled back: none of the ",
                         paths.size(), " ", what, " is left (", i, " already renamed into place were removed)"));
    }
  }
}

}  // namespace mvar
