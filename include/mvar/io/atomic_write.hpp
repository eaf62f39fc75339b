// mvar/io/atomic_write.hpp — write files atomically: the bytes go to a temporary file in the same
// directory, which is renamed over the target only once complete and flushed. A failed or
// interrupted write leaves no partial file behind.
//
// atomic_write writes one file. atomic_write_all writes several as one unit (e.g. the numbered
// images of a batch): every file goes to its temporary first, the targets are checked, and only
// then is anything renamed into place; on failure every temporary is removed and nothing of the
// batch is left, so a batch is never half written.
//
// Targets that are not regular files (docs/reliability.md, "Output onto device nodes"): the rename
// would replace the node itself (`--output /dev/null` run as root would turn /dev/null into a
// PNG file). What exists at the path, after following symlinks, decides:
//   * character device (/dev/null, /dev/stdout's tty) or FIFO: atomic_write writes straight
//     through to it — no temporary, no rename, the node (and a symlink to it) stays. A FIFO is
//     opened without blocking: with no process reading it the write is refused at once
//     ("is a FIFO that no process reads") instead of hanging. What reached a device before an
//     error stays there (a device has no "old content" to keep).
//   * block device, socket: refused before anything is written ("is a block device; …").
//   * directory: refused as before (rename fails with EISDIR; the directory is untouched).
//   atomic_write_all (a batch written all or nothing) refuses any non-regular target up front.
// An empty path is refused ("output path is empty") instead of creating ".tmp.<pid>".
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
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

/// "character device", "FIFO", … for messages.
inline const char* node_kind(mode_t m) {
  if (S_ISCHR(m)) return "character device";
  if (S_ISFIFO(m)) return "FIFO";
  if (S_ISBLK(m)) return "block device";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISDIR(m)) return "directory";
  return "special file";
}

/// Writes the content straight into an existing character device or FIFO (no temporary, no
/// rename). A FIFO without a reader is refused at once (non-blocking open, ENXIO).
inline void write_through(const std::string& path, mode_t mode, const std::function<bool(std::FILE*)>& writer) {
  const bool fifo = S_ISFIFO(mode);
  const int fd = ::open(path.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC | (fifo ? O_NONBLOCK : 0));
  if (fd < 0) {
    const int e = errno;
    if (fifo && e == ENXIO) throw Error(concat(path, ": is a FIFO that no process reads; nothing was written"));
    throw Error(concat(path, ": cannot write to this ", node_kind(mode), ": ", std::strerror(e)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) ||
      (fifo && ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)) {
    ::close(fd);
    throw Error(concat(path, ": changed while it was opened (no longer a ", node_kind(mode), "); nothing was written"));
  }
  std::FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    const int e = errno;
    ::close(fd);
    throw Error(concat(path, ": cannot write: ", std::strerror(e)));
  }
  bool ok = false;
  try {
    ok = writer(f);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  ok = ok && std::fflush(f) == 0;  // no fsync: devices and pipes do not implement it
  const int e = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw Error(concat(path, ": write to the ", node_kind(mode), " failed: ", std::strerror(e ? e : EIO)));
}

/// What stat() says the existing target is; 0 when there is none (or it cannot be stat'ed).
inline mode_t existing_mode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_mode : 0;
}

}  // namespace detail

/// writer(FILE*) must write the content and return true on success. Regular files (new or
/// existing) get the temporary + rename; character devices and FIFOs are written through; block
/// devices and sockets are refused (header comment).
inline void atomic_write(const std::string& path, const std::function<bool(std::FILE*)>& writer) {
  if (path.empty()) throw Error("output path is empty");
  const mode_t m = detail::existing_mode(path);
  if (m != 0 && (S_ISCHR(m) || S_ISFIFO(m))) return detail::write_through(path, m, writer);
  if (m != 0 && !S_ISREG(m) && !S_ISDIR(m))
    throw Error(concat(path, ": is a ", detail::node_kind(m),
                       "; refusing to write onto it (regular files, character devices such as /dev/null and FIFOs are written)"));
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
  for (const auto& p : paths) {  // before any temporary exists: a batch never goes to a device
    if (p.empty()) throw Error(concat("output path is empty", none));
    const mode_t m = detail::existing_mode(p);
    if (m != 0 && !S_ISREG(m) && !S_ISDIR(m))
      throw Error(concat(p, ": is a ", detail::node_kind(m), "; the files of a batch are written all or nothing, as regular files",
                         none));
  }
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
