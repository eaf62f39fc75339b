// mvar/io/zip.hpp — ZipArchive: a strict, read-only index of the *stored* (uncompressed) entries
// of a zip archive held in memory (usually a memory-mapped file), as PyTorch's torch.save writes
// them (torch ≥ 1.6: every entry stored, data aligned to 64 bytes, sizes in the central directory,
// a zip64 end record always present, zip64 extra fields once a size or offset reaches 4 GiB).
//
// Why not libzip/minizip: both return entry bytes through a read/copy API; mvar wants each entry
// as a pointer into the mapping (zero copy, no extra dependency for a header-only library), and
// only needs the stored case. See docs/pth.md.
//
// Trusts nothing: end record found and consistent, single disk, central directory inside the
// file, every entry stored (method 0, not encrypted, compressed size == size), its local header
// inside the file and naming the same entry, its data inside the file and before the central
// directory, no two entries (header + data) overlapping, no duplicate names. Every failure throws
// mvar::Error naming the archive and, where there is one, the entry.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mvar/core/error.hpp"

namespace mvar {

/// One stored entry: its data is bytes [offset, offset + size) of the archive.
struct ZipEntry {
  std::string name;
  std::uint64_t offset = 0;  // of the entry's data (after the local header)
  std::uint64_t size = 0;
  std::uint32_t crc32 = 0;   // as recorded in the central directory
};

namespace detail {

inline std::uint64_t read_le(const std::byte* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::uint64_t(std::to_integer<std::uint8_t>(p[i]));
  return v;
}

// The zip record signatures ("PK" + two bytes), little-endian.
inline constexpr std::uint32_t kZipLocalSig = 0x04034b50;
inline constexpr std::uint32_t kZipCentralSig = 0x02014b50;
inline constexpr std::uint32_t kZipEndSig = 0x06054b50;
inline constexpr std::uint32_t kZip64EndSig = 0x06064b50;
inline constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
inline constexpr std::size_t kZipEndSize = 22, kZip64LocatorSize = 20, kZip64EndSize = 56;
inline constexpr std::size_t kZipCentralSize = 46, kZipLocalSize = 30;

inline constexpr std::array<std::uint32_t, 256> make_crc32_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;  // reflected 0x04c11db7
    t[i] = c;
  }
  return t;
}

}  // namespace detail

/// CRC-32 (IEEE 802.3, as zip records it) of a byte range.
inline std::uint32_t crc32(std::span<const std::byte> bytes) {
  static constexpr auto table = detail::make_crc32_table();
  std::uint32_t c = 0xffffffffu;
  for (std::byte b : bytes) c = table[(c ^ std::to_integer<std::uint8_t>(b)) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

class ZipArchive {
 public:
  /// Indexes the archive in `bytes` (which must outlive this object). `source` names it in errors.
  ZipArchive(std::span<const std::byte> bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {
    parse();
  }

  const std::string& source() const { return source_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }
  /// The entry's data, a view into the archive bytes.
  std::span<const std::byte> data(const ZipEntry& e) const { return bytes_.subspan(e.offset, e.size); }
  /// Throws unless the entry's data has the CRC-32 the central directory records.
  void verify_crc(const ZipEntry& e) const {
    const std::uint32_t got = crc32(data(e));
    if (got != e.crc32)
      throw Error(concat("zip: ", source_, ": entry '", e.name, "' is corrupt (CRC-32 ", got, ", recorded ", e.crc32, ")"));
  }

 private:
  Error fail(const std::string& what) const { return Error(concat("zip: ", source_, ": ", what)); }

  void parse() {
    using detail::read_le;
    const std::byte* p = bytes_.data();
    const std::uint64_t size = bytes_.size();
    if (size < detail::kZipEndSize) throw fail(concat("file is ", size, " bytes, too short for a zip archive"));

    // End of central directory: the last 22 bytes, or earlier if an archive comment follows it.
    std::uint64_t end = UINT64_MAX;
    const std::uint64_t lowest = size >= detail::kZipEndSize + 0xffff ? size - detail::kZipEndSize - 0xffff : 0;
    for (std::uint64_t pos = size - detail::kZipEndSize + 1; pos-- > lowest;) {
      if (read_le(p + pos, 4) == detail::kZipEndSig && pos + detail::kZipEndSize + read_le(p + pos + 20, 2) == size) {
        end = pos;
        break;
      }
    }
    if (end == UINT64_MAX) throw fail("no end-of-central-directory record (truncated, or not a zip archive)");
    const std::byte* e = p + end;
    std::uint64_t disk = read_le(e + 4, 2), cd_disk = read_le(e + 6, 2);
    std::uint64_t n_disk = read_le(e + 8, 2), n_total = read_le(e + 10, 2);
    std::uint64_t cd_size = read_le(e + 12, 4), cd_offset = read_le(e + 16, 4);
    std::uint64_t records_end = end;  // the central directory ends where the end records begin
    // The classic end record's disk numbers must say "single disk" even when a zip64 record
    // follows (where it may only saturate them to 0xffff): a record claiming another disk is a
    // split archive, refused here rather than trusting the zip64 record's fields alone.
    if ((disk != 0 && disk != 0xffff) || (cd_disk != 0 && cd_disk != 0xffff) ||
        (n_disk != n_total && n_disk != 0xffff && n_total != 0xffff))
      throw fail(concat("end record claims disk ", disk, " (central directory on disk ", cd_disk, ", ", n_disk, " of ", n_total,
                        " entries here): multi-disk (split) archives are not supported"));

    // zip64: a locator right before the end record points at the zip64 end record.
    if (end >= detail::kZip64LocatorSize && read_le(p + end - detail::kZip64LocatorSize, 4) == detail::kZip64LocatorSig) {
      const std::byte* loc = p + end - detail::kZip64LocatorSize;
      const std::uint64_t z64 = read_le(loc + 8, 8);
      if (read_le(loc + 4, 4) != 0 || read_le(loc + 16, 4) > 1) throw fail("multi-disk zip64 archives are not supported");
      if (z64 > end - detail::kZip64LocatorSize || end - detail::kZip64LocatorSize - z64 < detail::kZip64EndSize)
        throw fail(concat("zip64 end record offset ", z64, " is outside the archive"));
      const std::byte* r = p + z64;
      if (read_le(r, 4) != detail::kZip64EndSig) throw fail(concat("no zip64 end record at offset ", z64));
      disk = read_le(r + 16, 4);
      cd_disk = read_le(r + 20, 4);
      n_disk = read_le(r + 24, 8);
      n_total = read_le(r + 32, 8);
      cd_size = read_le(r + 40, 8);
      cd_offset = read_le(r + 48, 8);
      records_end = z64;
    } else if (n_total == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
      throw fail("end record defers to a zip64 end record that is missing");
    }
    if (disk != 0 || cd_disk != 0 || n_disk != n_total) throw fail("multi-disk (split) archives are not supported");
    if (cd_offset > records_end || cd_size != records_end - cd_offset)
      throw fail(concat("central directory [", cd_offset, ", +", cd_size, ") does not end where the end records begin (",
                        records_end, ")"));
    if (n_total > cd_size / detail::kZipCentralSize)
      throw fail(concat("central directory of ", cd_size, " bytes cannot hold the ", n_total, " entries it claims"));

    // Each entry claims [local header, end of data); these ranges must be disjoint.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> claimed;
    std::uint64_t pos = cd_offset;
    for (std::uint64_t i = 0; i < n_total; ++i) {
      if (records_end - pos < detail::kZipCentralSize) throw fail(concat("central directory entry ", i, " is truncated"));
      const std::byte* c = p + pos;
      if (read_le(c, 4) != detail::kZipCentralSig) throw fail(concat("central directory entry ", i, " has a bad signature"));
      const std::uint64_t flags = read_le(c + 8, 2), method = read_le(c + 10, 2);
      const std::uint32_t crc = std::uint32_t(read_le(c + 16, 4));
      std::uint64_t csize = read_le(c + 20, 4), usize = read_le(c + 24, 4);
      const std::uint64_t name_len = read_le(c + 28, 2), extra_len = read_le(c + 30, 2), comment_len = read_le(c + 32, 2);
      std::uint64_t start_disk = read_le(c + 34, 2), local = read_le(c + 42, 4);
      if (records_end - pos - detail::kZipCentralSize < name_len + extra_len + comment_len)
        throw fail(concat("central directory entry ", i, " runs past the central directory"));
      std::string name(reinterpret_cast<const char*>(c + detail::kZipCentralSize), name_len);
      auto bad = [&](const std::string& what) { return fail(concat("entry '", name, "': ", what)); };

      // zip64 extended information: 8-byte values for exactly the fields saturated above, in order.
      const std::byte* x = c + detail::kZipCentralSize + name_len;
      for (std::uint64_t off = 0; off + 4 <= extra_len;) {
        const std::uint64_t id = read_le(x + off, 2), len = read_le(x + off + 2, 2);
        if (off + 4 + len > extra_len) throw bad("extra field runs past its record");
        if (id == 0x0001) {
          std::uint64_t k = 0;
          auto take = [&](std::uint64_t& field, std::uint64_t saturated, int width) {
            if (field != saturated) return;
            if (k + width > len) throw bad("zip64 extra field is too short for the sizes it must hold");
            field = read_le(x + off + 4 + k, width);
            k += width;
          };
          take(usize, 0xffffffff, 8);
          take(csize, 0xffffffff, 8);
          take(local, 0xffffffff, 8);
          take(start_disk, 0xffff, 4);
        }
        off += 4 + len;
      }
      if (usize == 0xffffffff || csize == 0xffffffff || local == 0xffffffff)
        throw bad("size or offset saturated without a zip64 extra field");
      if (start_disk != 0) throw bad("lies on another disk");
      if (flags & 0x1u) throw bad("is encrypted");
      if (method != 0) throw bad(concat("is compressed (method ", method, "); only stored entries are read — re-save with torch.save"));
      if (csize != usize) throw bad(concat("is stored but its compressed size ", csize, " differs from its size ", usize));
      if (name.empty()) throw fail(concat("central directory entry ", i, " has an empty name"));
      if (index_.count(name)) throw bad("appears twice in the central directory");

      // Local header: only its name and extra lengths matter (torch sets bit 3, so its sizes are 0).
      if (local > cd_offset || cd_offset - local < detail::kZipLocalSize) throw bad(concat("local header offset ", local, " is out of range"));
      const std::byte* l = p + local;
      if (read_le(l, 4) != detail::kZipLocalSig) throw bad(concat("no local header at offset ", local));
      const std::uint64_t lname = read_le(l + 26, 2), lextra = read_le(l + 28, 2);
      const std::uint64_t data = local + detail::kZipLocalSize + lname + lextra;
      if (data > cd_offset) throw bad("local header runs into the central directory");
      if (lname != name_len || std::string_view(reinterpret_cast<const char*>(l + detail::kZipLocalSize), lname) != name)
        throw bad("local header names a different entry");
      if (read_le(l + 8, 2) != method) throw bad("local header disagrees on the compression method");
      if (usize > cd_offset - data)
        throw bad(concat("data [", data, ", +", usize, ") runs past the end of the entries (", cd_offset, ")"));
      claimed.emplace_back(local, data + usize);
      index_.emplace(name, entries_.size());
      entries_.push_back(ZipEntry{std::move(name), data, usize, crc});
      pos += detail::kZipCentralSize + name_len + extra_len + comment_len;
    }
    if (pos != records_end) throw fail("central directory holds bytes after its last entry");

    std::vector<std::size_t> order(claimed.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return claimed[a] < claimed[b]; });
    for (std::size_t k = 1; k < order.size(); ++k)
      if (claimed[order[k]].first < claimed[order[k - 1]].second)
        throw fail(concat("entries '", entries_[order[k - 1]].name, "' and '", entries_[order[k]].name, "' overlap"));
  }

  std::span<const std::byte> bytes_;
  std::string source_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

}  // namespace mvar
