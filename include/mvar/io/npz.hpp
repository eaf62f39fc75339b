// mvar/io/npz.hpp — numpy's .npz format (a zip of .npy members, every member *stored*), written
// as a stream and read strictly.
//
// NpzWriter writes members one after another without holding them in memory: begin_array()
// writes the member's zip local header and .npy header (the size is known from the shape), write()
// appends data while the CRC-32 runs (zlib's crc32_z, the library libpng already links), and
// end_array() patches the CRC into the local header. Everything goes to a temporary file in the
// target's directory; commit() appends the central directory, fsyncs, renames it over the target
// and fsyncs the directory. Until commit() the target does not exist (or keeps its old content),
// and the temporary has no central directory, so no zip reader takes it for a complete archive.
//
// A run that was stopped can continue the *first* member of a temporary (resume()): the headers
// at offset 0 must be exactly those begin_array() writes for the same name and shape, and the
// data already there is re-read to recompute its CRC. This is what the evaluation runner needs
// (pipeline/evaluation.hpp): arr_0 grows image by image and is the only member in progress.
//
// The bytes depend only on the members (names, shapes, data): timestamps are the DOS epoch
// 1980-01-01 00:00, no extra fields unless zip64 needs them. zip64 (PKWARE APPNOTE 4.5) is used
// for exactly the fields that need it: a member of ≥ 0xFFFFFFFF bytes, a local header beyond
// 4 GiB, or a central directory beyond 4 GiB; Options::force_zip64 uses it everywhere (tests).
// .npy headers are version 1.0, padded so that the data starts at a multiple of 64 bytes, as
// numpy's own writer pads them (numpy/lib/format.py, ARRAY_ALIGN).
//
// NpzReader maps a file, indexes it with the strict ZipArchive (io/zip.hpp: bounds, overlaps,
// duplicates, stored only) and parses each .npy header strictly: magic, version 1.0 or 2.0, a
// header within the member, only the keys descr / fortran_order / shape, C order, a known
// little-endian descr, shape × item size == the data bytes (overflow-checked). Every failure is
// one mvar::Error naming the file and the member.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mvar/core/error.hpp"
#include "mvar/io/mapped_file.hpp"
#include "mvar/io/zip.hpp"

namespace mvar {

/// CRC-32 continued over more bytes (zlib's crc32_z: several GB/s, where the table loop of
/// zip.hpp's crc32() manages a few hundred MB/s — it matters for a 10 GB arr_0).
inline std::uint32_t crc32_update(std::uint32_t crc, std::span<const std::byte> bytes) {
  return std::uint32_t(::crc32_z(crc, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

/// An .npy array's element type as numpy spells it ("|u1", "<i8", …) and its shape.
struct NpyHeader {
  std::string descr;
  std::vector<std::uint64_t> shape;
};

namespace detail {

inline void put_le(std::string& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(char((v >> (8 * i)) & 0xffu));
}

/// Bytes per element of a descr mvar reads or writes (little-endian or byte-sized, no objects).
inline std::uint64_t npy_item_size(std::string_view descr) {
  static constexpr std::string_view known[] = {"|u1", "|i1", "|b1", "<u2", "<i2", "<f2", "<u4", "<i4",
                                               "<f4", "<u8", "<i8", "<f8"};
  for (std::string_view k : known)
    if (descr == k) return std::uint64_t(k[2] - '0');
  return 0;
}

/// Product of the shape times the item size, or UINT64_MAX on overflow.
inline std::uint64_t npy_data_bytes(const NpyHeader& h) {
  std::uint64_t n = npy_item_size(h.descr);
  for (std::uint64_t d : h.shape) {
    if (d != 0 && n > UINT64_MAX / d) return UINT64_MAX;
    n *= d;
  }
  return n;
}

/// The .npy 1.0 header numpy writes for h: magic, version, length, the dict, spaces, '\n'.
inline std::string npy_header_bytes(const NpyHeader& h) {
  std::string dict = "{'descr': '" + h.descr + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < h.shape.size(); ++i) dict += std::to_string(h.shape[i]) + (h.shape.size() == 1 ? "," : (i + 1 < h.shape.size() ? ", " : ""));
  dict += "), }";
  const std::size_t prefix = 10;  // "\x93NUMPY" + version (2) + header length (2)
  std::size_t total = prefix + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back('\x01');
  out.push_back('\x00');
  put_le(out, dict.size(), 2);
  return out + dict;
}

inline constexpr std::uint64_t kZip32Max = 0xffffffffu;  // a saturated 32-bit size/offset field
inline constexpr std::uint64_t kDosDate19800101 = (1u << 5) | 1u;  // day 1, month 1, year 1980

/// Parses a .npy member strictly; returns its header and the offset of its data. `where` names
/// the file and member in errors.
inline std::pair<NpyHeader, std::size_t> parse_npy(std::span<const std::byte> m, const std::string& where) {
  auto fail = [&](const std::string& what) { return Error(concat("npz: ", where, ": ", what)); };
  if (m.size() < 10 || std::memcmp(m.data(), "\x93NUMPY", 6) != 0) throw fail("not an .npy array (no \\x93NUMPY magic)");
  const int major = std::to_integer<int>(m[6]), minor = std::to_integer<int>(m[7]);
  std::size_t len = 0, prefix = 0;
  if (major == 1 && minor == 0) {
    len = std::size_t(detail::read_le(m.data() + 8, 2)), prefix = 10;
  } else if (major == 2 && minor == 0) {
    if (m.size() < 12) throw fail("truncated .npy 2.0 header");
    len = std::size_t(detail::read_le(m.data() + 8, 4)), prefix = 12;
  } else {
    throw fail(concat(".npy version ", major, ".", minor, " is not supported (1.0 or 2.0)"));
  }
  constexpr std::size_t kMaxHeader = 1 << 20;  // numpy's own headers are < 100 bytes per dimension
  if (len > kMaxHeader || len > m.size() - prefix) throw fail(concat(".npy header of ", len, " bytes runs past the member"));
  const std::string_view text(reinterpret_cast<const char*>(m.data() + prefix), len);
  if (text.empty() || text.back() != '\n') throw fail(".npy header does not end with a newline");

  // The dict numpy writes: {'descr': '<i8', 'fortran_order': False, 'shape': (3, 4), }
  std::size_t p = 0;
  auto ws = [&] { while (p < text.size() && (text[p] == ' ' || text[p] == '\n')) ++p; };
  auto expect = [&](char c) {
    ws();
    if (p >= text.size() || text[p] != c) throw fail(concat(".npy header: expected '", c, "' at byte ", p));
    ++p;
  };
  auto quoted = [&] {
    ws();
    if (p >= text.size() || (text[p] != '\'' && text[p] != '"')) throw fail(concat(".npy header: expected a string at byte ", p));
    const char q = text[p++];
    const std::size_t end = text.find(q, p);
    if (end == std::string_view::npos || end - p > 64) throw fail(".npy header: unterminated or overlong string");
    std::string s(text.substr(p, end - p));
    p = end + 1;
    return s;
  };
  NpyHeader h;
  bool have_descr = false, have_order = false, have_shape = false;
  expect('{');
  for (;;) {
    ws();
    if (p < text.size() && text[p] == '}') break;
    const std::string key = quoted();
    expect(':');
    ws();
    if (key == "descr" && !have_descr) {
      h.descr = quoted(), have_descr = true;
    } else if (key == "fortran_order" && !have_order) {
      if (text.substr(p, 5) == "False") p += 5;
      else if (text.substr(p, 4) == "True") throw fail("Fortran-order arrays are not supported");
      else throw fail(".npy header: fortran_order must be False or True");
      have_order = true;
    } else if (key == "shape" && !have_shape) {
      expect('(');
      for (;;) {
        ws();
        if (p < text.size() && text[p] == ')') break;
        std::uint64_t v = 0;
        std::size_t digits = 0;
        while (p < text.size() && text[p] >= '0' && text[p] <= '9' && digits < 20) {
          const std::uint64_t d = std::uint64_t(text[p] - '0');
          if (v > (UINT64_MAX - d) / 10) throw fail(".npy header: a dimension overflows 64 bits");
          v = v * 10 + d, ++p, ++digits;
        }
        if (digits == 0) throw fail(concat(".npy header: expected a dimension at byte ", p));
        if (h.shape.size() >= 32) throw fail(".npy header: more than 32 dimensions");
        h.shape.push_back(v);
        ws();
        if (p < text.size() && text[p] == ',') ++p;
        else if (p >= text.size() || text[p] != ')') throw fail(concat(".npy header: expected ',' or ')' at byte ", p));
      }
      ++p;
      have_shape = true;
    } else {
      throw fail(concat(".npy header: unexpected or repeated key '", key, "'"));
    }
    ws();
    if (p < text.size() && text[p] == ',') ++p;
  }
  ++p;
  ws();
  if (p != text.size()) throw fail(".npy header: bytes after the dict");
  if (!have_descr || !have_order || !have_shape) throw fail(".npy header lacks descr, fortran_order or shape");
  if (npy_item_size(h.descr) == 0) throw fail(concat("element type '", h.descr, "' is not supported"));
  const std::uint64_t bytes = npy_data_bytes(h), have = m.size() - prefix - len;
  if (bytes != have) throw fail(concat("shape and type need ", bytes == UINT64_MAX ? std::string("more than 2^64") : std::to_string(bytes),
                                       " data bytes, the member holds ", have));
  return {h, prefix + len};
}

}  // namespace detail

struct NpzWriteOptions {
  bool force_zip64 = false;     // zip64 records for every member (tests; numpy reads both)
  bool remove_on_abort = true;  // destroyed before commit(): delete the temporary (else keep it)
};

/// Writes an .npz (or any stored zip) member by member; see the file comment.
class NpzWriter {
 public:
  using Options = NpzWriteOptions;

  /// Where a stopped run left the first member: its data bytes so far (npy header excluded).
  struct Progress {
    std::uint64_t data_bytes = 0;
  };

  /// Starts a new archive: `temp` (same directory as `target`) is created or truncated.
  NpzWriter(std::string target, std::string temp, Options opts = {})
      : target_(std::move(target)), temp_(std::move(temp)), opts_(opts) {
    open_temp(O_CREAT | O_TRUNC);
  }

  /// Continues a temporary whose first member `name` with header `h` has `done.data_bytes` of data
  /// already written: checks the headers at offset 0, recomputes the CRC of that data, truncates
  /// whatever follows it. Throws mvar::Error naming the temporary when it does not match.
  static NpzWriter resume(std::string target, std::string temp, const std::string& name, const NpyHeader& h,
                          Progress done, Options opts = {}) {
    // A resume that fails leaves the temporary as it found it, whatever opts says.
    NpzWriter w(std::move(target), std::move(temp), Options{opts.force_zip64, false}, 0);
    w.begin_member(name, h, /*write=*/false);
    const std::string expected = w.pending_;
    struct stat st {};
    if (::fstat(w.fd_, &st) != 0) throw w.io_error("cannot stat", errno);
    const std::uint64_t want = expected.size() + done.data_bytes;
    if (std::uint64_t(st.st_size) < want || done.data_bytes > w.cur_.declared)
      throw Error(concat(w.temp_, ": holds ", st.st_size, " bytes, fewer than the ", want, " of the finished work it should hold"));
    std::vector<std::byte> buf(std::size_t(1) << 22);
    std::string head(expected.size(), '\0');
    w.read_at(head.data(), head.size(), 0);
    // The local header's CRC field is 0 until end_array(); everything else must match exactly.
    if (head != expected) throw Error(concat(w.temp_, ": does not begin with the member '", name, "' this run writes"));
    std::uint32_t crc = crc32_update(0, std::as_bytes(std::span(w.npy_.data(), w.npy_.size())));
    for (std::uint64_t off = 0; off < done.data_bytes;) {
      const std::size_t n = std::size_t(std::min<std::uint64_t>(buf.size(), done.data_bytes - off));
      w.read_at(buf.data(), n, expected.size() + off);
      crc = crc32_update(crc, std::span(buf.data(), n));
      off += n;
    }
    if (::ftruncate(w.fd_, off_t(want)) != 0) throw w.io_error("cannot truncate", errno);
    w.pending_.clear();
    w.pos_ = want;
    w.cur_.crc = crc;
    w.cur_.written = done.data_bytes;
    w.opts_ = opts;
    return w;
  }

  NpzWriter(NpzWriter&& o) noexcept { *this = std::move(o); }
  NpzWriter& operator=(NpzWriter&& o) noexcept {
    if (this != &o) {
      abort();
      target_ = std::move(o.target_), temp_ = std::move(o.temp_), opts_ = o.opts_;
      fd_ = o.fd_, pos_ = o.pos_, members_ = std::move(o.members_), cur_ = o.cur_, in_member_ = o.in_member_;
      pending_ = std::move(o.pending_), npy_ = std::move(o.npy_), committed_ = o.committed_;
      o.fd_ = -1;
    }
    return *this;
  }
  NpzWriter(const NpzWriter&) = delete;
  NpzWriter& operator=(const NpzWriter&) = delete;
  ~NpzWriter() { abort(); }

  const std::string& temp_path() const { return temp_; }

  /// Starts member `name` + ".npy" with the given header; exactly npy_data_bytes(h) must follow.
  void begin_array(const std::string& name, const NpyHeader& h) { begin_member(name + ".npy", h, true); }
  /// A member holding raw bytes (not an array), e.g. "settings.json".
  void add_file(const std::string& name, std::span<const std::byte> bytes) {
    begin_member(name, NpyHeader{"|u1", {bytes.size()}}, true, /*npy=*/false);
    write(bytes);
    end_array();
  }
  /// One whole array member.
  void add_array(const std::string& name, const NpyHeader& h, std::span<const std::byte> data) {
    begin_array(name, h);
    write(data);
    end_array();
  }

  void write(std::span<const std::byte> data) {
    if (!in_member_) throw Error(concat(temp_, ": npz write outside a member"));
    if (data.size() > cur_.declared - cur_.written)
      throw Error(concat(temp_, ": member '", cur_.name, "' declared ", cur_.declared, " data bytes, got more"));
    write_all(data.data(), data.size());
    cur_.crc = crc32_update(cur_.crc, data);
    cur_.written += data.size();
  }

  /// The current member's data bytes written so far.
  Progress progress() const { return Progress{cur_.written}; }

  /// Flushes what was written to the device (fdatasync): a crash after it keeps those bytes.
  void sync() {
    if (::fdatasync(fd_) != 0) throw io_error("cannot flush to disk", errno);
  }

  void end_array() {
    if (!in_member_) throw Error(concat(temp_, ": npz end_array without a member"));
    if (cur_.written != cur_.declared)
      throw Error(concat(temp_, ": member '", cur_.name, "' declared ", cur_.declared, " data bytes, got ", cur_.written));
    std::string crc;
    detail::put_le(crc, cur_.crc, 4);
    if (::pwrite(fd_, crc.data(), 4, off_t(cur_.offset + 14)) != 4) throw io_error("cannot write", errno);
    members_.push_back(cur_);
    in_member_ = false;
  }

  /// Appends the central directory, flushes, renames the temporary over the target and flushes
  /// the directory. After it the writer is finished.
  void commit() {
    if (in_member_) throw Error(concat(temp_, ": npz commit with member '", cur_.name, "' unfinished"));
    std::string cd;
    for (const Member& m : members_) {
      const bool big = opts_.force_zip64 || m.total >= detail::kZip32Max, far = opts_.force_zip64 || m.offset >= detail::kZip32Max;
      std::string extra;
      if (big || far) {
        std::string vals;
        if (big) detail::put_le(vals, m.total, 8), detail::put_le(vals, m.total, 8);
        if (far) detail::put_le(vals, m.offset, 8);
        detail::put_le(extra, 0x0001, 2), detail::put_le(extra, vals.size(), 2);
        extra += vals;
      }
      detail::put_le(cd, detail::kZipCentralSig, 4);
      detail::put_le(cd, 45, 2);                    // made by: version 4.5, MS-DOS attributes
      detail::put_le(cd, big || far ? 45 : 20, 2);  // needed: 4.5 for zip64, else 2.0
      detail::put_le(cd, 0, 2), detail::put_le(cd, 0, 2);  // flags, method (stored)
      detail::put_le(cd, 0, 2), detail::put_le(cd, detail::kDosDate19800101, 2);
      detail::put_le(cd, m.crc, 4);
      detail::put_le(cd, big ? detail::kZip32Max : m.total, 4), detail::put_le(cd, big ? detail::kZip32Max : m.total, 4);
      detail::put_le(cd, m.name.size(), 2), detail::put_le(cd, extra.size(), 2), detail::put_le(cd, 0, 2);
      detail::put_le(cd, 0, 2), detail::put_le(cd, 0, 2), detail::put_le(cd, 0, 4);  // disk, attributes
      detail::put_le(cd, far ? detail::kZip32Max : m.offset, 4);
      cd += m.name + extra;
    }
    const std::uint64_t cd_offset = pos_, n = members_.size();
    const bool z64 = opts_.force_zip64 || cd_offset >= detail::kZip32Max || cd.size() >= detail::kZip32Max || n >= 0xffff;
    std::string end;
    if (z64) {
      detail::put_le(end, detail::kZip64EndSig, 4), detail::put_le(end, detail::kZip64EndSize - 12, 8);
      detail::put_le(end, 45, 2), detail::put_le(end, 45, 2), detail::put_le(end, 0, 4), detail::put_le(end, 0, 4);
      detail::put_le(end, n, 8), detail::put_le(end, n, 8), detail::put_le(end, cd.size(), 8), detail::put_le(end, cd_offset, 8);
      detail::put_le(end, detail::kZip64LocatorSig, 4), detail::put_le(end, 0, 4);
      detail::put_le(end, cd_offset + cd.size(), 8), detail::put_le(end, 1, 4);
    }
    detail::put_le(end, detail::kZipEndSig, 4), detail::put_le(end, 0, 2), detail::put_le(end, 0, 2);
    detail::put_le(end, z64 ? 0xffff : n, 2), detail::put_le(end, z64 ? 0xffff : n, 2);
    detail::put_le(end, z64 ? detail::kZip32Max : cd.size(), 4), detail::put_le(end, z64 ? detail::kZip32Max : cd_offset, 4);
    detail::put_le(end, 0, 2);
    cd += end;
    write_all(reinterpret_cast<const std::byte*>(cd.data()), cd.size());
    if (::fsync(fd_) != 0) throw io_error("cannot flush to disk", errno);
    if (::close(fd_) != 0) {
      fd_ = -1;
      throw io_error("cannot close", errno);
    }
    fd_ = -1;
    if (std::rename(temp_.c_str(), target_.c_str()) != 0) {
      const int e = errno;
      if (opts_.remove_on_abort) std::remove(temp_.c_str());
      throw Error(concat(target_, ": cannot rename ", temp_, " into place: ", std::strerror(e)));
    }
    sync_directory(target_);
    committed_ = true;
  }

  /// fsync of the directory holding `path`, so that a rename into it survives a crash.
  static void sync_directory(const std::string& path) {
    const auto slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) ::fsync(d), ::close(d);
  }

 private:
  struct Member {
    std::string name;
    std::uint64_t offset = 0, total = 0;  // local header offset; member bytes (npy header + data)
    std::uint64_t declared = 0, written = 0;
    std::uint32_t crc = 0;
  };

  NpzWriter(std::string target, std::string temp, Options opts, int) : target_(std::move(target)), temp_(std::move(temp)), opts_(opts) {
    open_temp(0);
  }

  // The temporary is locked (flock) before anything in it changes: a second writer of the same
  // temporary — the same command started twice, a requeued job beside the old one — is refused.
  void open_temp(int flags) {
    fd_ = ::open(temp_.c_str(), O_RDWR | O_CLOEXEC | (flags & ~O_TRUNC), 0644);
    if (fd_ < 0) throw Error(concat(temp_, ": cannot open for writing: ", std::strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      ::close(fd_);
      fd_ = -1;
      throw Error(e == EWOULDBLOCK ? concat(temp_, ": another process is writing this file (the same run started twice?)")
                                   : concat(temp_, ": cannot lock: ", std::strerror(e)));
    }
    if ((flags & O_TRUNC) && ::ftruncate(fd_, 0) != 0) throw io_error("cannot truncate", errno);
  }

  Error io_error(const char* what, int e) const { return Error(concat(temp_, ": ", what, ": ", std::strerror(e ? e : EIO))); }

  void write_all(const std::byte* p, std::size_t n) {
    while (n > 0) {
      const ssize_t k = ::pwrite(fd_, p, std::min<std::size_t>(n, std::size_t(1) << 30), off_t(pos_));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) throw io_error("cannot write", k < 0 ? errno : ENOSPC);
      p += k, n -= std::size_t(k), pos_ += std::uint64_t(k);
    }
  }

  void read_at(void* p, std::size_t n, std::uint64_t off) const {
    auto* b = static_cast<char*>(p);
    while (n > 0) {
      const ssize_t k = ::pread(fd_, b, n, off_t(off));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) throw io_error("cannot read back", k < 0 ? errno : EIO);
      b += k, n -= std::size_t(k), off += std::uint64_t(k);
    }
  }

  // Local header + (for arrays) .npy header; written now, or only prepared (resume compares).
  void begin_member(const std::string& name, const NpyHeader& h, bool write, bool npy = true) {
    if (in_member_) throw Error(concat(temp_, ": npz member '", cur_.name, "' is unfinished"));
    if (name.empty() || name.size() > 0xffff) throw Error(concat(temp_, ": npz member name must be 1–65535 bytes"));
    for (const Member& m : members_)
      if (m.name == name) throw Error(concat(temp_, ": npz member '", name, "' written twice"));
    npy_ = npy ? detail::npy_header_bytes(h) : std::string();
    const std::uint64_t data = detail::npy_data_bytes(h);
    if (data == UINT64_MAX || data > UINT64_MAX - npy_.size()) throw Error(concat(temp_, ": npz member '", name, "' is too large"));
    cur_ = Member{name, pos_, npy_.size() + data, data, 0, 0};
    const bool big = opts_.force_zip64 || cur_.total >= detail::kZip32Max;
    std::string l;
    detail::put_le(l, detail::kZipLocalSig, 4);
    detail::put_le(l, big || (opts_.force_zip64 || cur_.offset >= detail::kZip32Max) ? 45 : 20, 2);
    detail::put_le(l, 0, 2), detail::put_le(l, 0, 2);  // flags, method (stored)
    detail::put_le(l, 0, 2), detail::put_le(l, detail::kDosDate19800101, 2);
    detail::put_le(l, 0, 4);  // CRC-32, patched by end_array()
    detail::put_le(l, big ? detail::kZip32Max : cur_.total, 4), detail::put_le(l, big ? detail::kZip32Max : cur_.total, 4);
    detail::put_le(l, name.size(), 2), detail::put_le(l, big ? 20 : 0, 2);
    l += name;
    if (big) detail::put_le(l, 0x0001, 2), detail::put_le(l, 16, 2), detail::put_le(l, cur_.total, 8), detail::put_le(l, cur_.total, 8);
    l += npy_;
    cur_.crc = crc32_update(0, std::as_bytes(std::span(npy_.data(), npy_.size())));
    in_member_ = true;
    if (write) write_all(reinterpret_cast<const std::byte*>(l.data()), l.size());
    else pending_ = std::move(l);
  }

  void abort() {
    if (fd_ >= 0) ::close(fd_);
    if (fd_ >= 0 && !committed_ && opts_.remove_on_abort) std::remove(temp_.c_str());
    fd_ = -1;
  }

  std::string target_, temp_;
  Options opts_;
  int fd_ = -1;
  std::uint64_t pos_ = 0;
  std::vector<Member> members_;
  Member cur_;
  bool in_member_ = false, committed_ = false;
  std::string pending_, npy_;
};

/// One array of an .npz: its header and a view of its data inside the mapped file.
struct NpyArray {
  NpyHeader header;
  std::span<const std::byte> data;
};

/// Reads an .npz strictly (see the file comment). The file stays mapped while the reader lives.
class NpzReader {
 public:
  explicit NpzReader(const std::string& path)
      : file_(std::make_unique<MappedFile>(path)), zip_(std::span(file_->data(), file_->size()), path) {}
  /// Reads an archive already in memory (`bytes` must outlive the reader); `source` names it.
  NpzReader(std::span<const std::byte> bytes, std::string source) : zip_(bytes, std::move(source)) {}

  const std::string& path() const { return zip_.source(); }
  const ZipArchive& zip() const { return zip_; }
  bool has(std::string_view member) const { return zip_.find(member) != nullptr; }

  /// The array stored as member `name` + ".npy" ("arr_0" → arr_0.npy).
  NpyArray array(const std::string& name) const {
    const ZipEntry& e = entry(name + ".npy");
    const auto bytes = zip_.data(e);
    auto [h, off] = detail::parse_npy(bytes, concat(path(), ": member '", e.name, "'"));
    return NpyArray{std::move(h), bytes.subspan(off)};
  }
  /// The raw bytes of a member that is not an array ("settings.json").
  std::span<const std::byte> file(const std::string& name) const { return zip_.data(entry(name)); }

  /// Throws unless the member's data has the CRC-32 its central directory records.
  void verify_crc(const std::string& member) const {
    const ZipEntry& e = entry(member);
    const auto bytes = zip_.data(e);
    std::uint32_t crc = 0;
    for (std::size_t off = 0; off < bytes.size(); off += std::size_t(1) << 24)
      crc = crc32_update(crc, bytes.subspan(off, std::min(bytes.size() - off, std::size_t(1) << 24)));
    if (crc != e.crc32)
      throw Error(concat("npz: ", path(), ": member '", member, "' is corrupt (CRC-32 ", crc, ", recorded ", e.crc32, ")"));
  }

 private:
  const ZipEntry& entry(const std::string& member) const {
    const ZipEntry* e = zip_.find(member);
    if (!e) throw Error(concat("npz: ", path(), ": no member '", member, "'"));
    return *e;
  }

  std::unique_ptr<MappedFile> file_;
  ZipArchive zip_;
};

}  // namespace mvar
