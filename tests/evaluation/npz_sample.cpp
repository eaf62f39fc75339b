// tests/evaluation/npz_sample.cpp — writes the .npz files tests/evaluation/numpy_reads.py checks
// with numpy: DIR/plain.npz and DIR/zip64.npz (zip64 records everywhere), each holding
// arr_0 uint8 [6, 5, 5, 3] with arr_0.flat[i] = (7·i + 3) mod 251, arr_1 int64 [6] = 10·i − 20,
// and settings.json = {"sample": true}.
#include <cstdio>
#include <string>
#include <vector>

#include "mvar/io/npz.hpp"

int main(int argc, char** argv) try {
  if (argc != 2) return std::fprintf(stderr, "usage: npz_sample DIR\n"), 2;
  for (bool zip64 : {false, true}) {
    const std::string path = std::string(argv[1]) + (zip64 ? "/zip64.npz" : "/plain.npz");
    mvar::NpzWriter w(path, path + ".tmp", mvar::NpzWriteOptions{zip64, true});
    std::vector<std::uint8_t> a(6 * 5 * 5 * 3);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::uint8_t((7 * i + 3) % 251);
    w.begin_array("arr_0", {"|u1", {6, 5, 5, 3}});
    w.write(std::as_bytes(std::span(a).first(100)));  // streamed in two pieces
    w.write(std::as_bytes(std::span(a).subspan(100)));
    w.end_array();
    std::vector<std::int64_t> l(6);
    for (int i = 0; i < 6; ++i) l[std::size_t(i)] = 10 * i - 20;
    w.add_array("arr_1", {"<i8", {6}}, std::as_bytes(std::span(l)));
    const std::string s = "{\"sample\": true}";
    w.add_file("settings.json", std::as_bytes(std::span(s.data(), s.size())));
    w.commit();
    std::printf("wrote %s\n", path.c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "npz_sample: %s\n", e.what());
  return 1;
}
