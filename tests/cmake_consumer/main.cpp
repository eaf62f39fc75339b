// Uses the public API through the umbrella header: proves the package's include paths and
// dependencies propagate to a consumer.
#include <mvar/mvar.hpp>

#include <cstdio>

int main() {
  float data[6] = {1, 2, 3, 4, 5, 6};
  mvar::TensorView<float, 2> v(data, {2, 3});
  mvar::ThreadPool pool(2);
  float sum = 0;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) sum += v(i, j);
  std::printf("consumer ok: sum=%g\n", sum);
  return sum == 21.0f ? 0 : 1;
}
