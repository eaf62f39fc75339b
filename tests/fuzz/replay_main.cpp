// A plain driver for the fuzz harnesses where libFuzzer is not available (GCC, or the sanitizer
// build of the test suite): runs LLVMFuzzerTestOneInput once on every file given, or on every
// regular file under the directories given, and prints how many it ran. A crash, an escaping
// exception or a sanitizer report fails the process, so CTest reports the corpus entry.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fs = std::filesystem;

static void run_one(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> buf((std::istreambuf_iterator<char>(in)), {});
  // Exactly-sized heap copy, as libFuzzer does, so that ASan sees reads past the end.
  std::vector<std::uint8_t> exact(buf.begin(), buf.end());
  exact.shrink_to_fit();
  LLVMFuzzerTestOneInput(exact.empty() ? nullptr : exact.data(), exact.size());
}

int main(int argc, char** argv) {
  std::size_t n = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    if (fs::is_directory(arg)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());  // stable order: a failure is reproducible
      for (const auto& f : files) {
        run_one(f);
        ++n;
      }
    } else if (fs::is_regular_file(arg)) {
      run_one(arg);
      ++n;
    } else {
      std::fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
      return 2;
    }
  }
  if (n == 0) {
    std::fprintf(stderr, "replay: no inputs (an empty corpus proves nothing)\n");
    return 2;
  }
  std::printf("replay: %zu inputs ran clean\n", n);
  return 0;
}
