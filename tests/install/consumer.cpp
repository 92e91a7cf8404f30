// A program outside the source tree, built by scripts/test against the installed copy of ladon
// (headers, libladon.a and ladon.pc only), so a missing header or link flag fails the install test.
#include <ladon/ladon.h>

#include <cstdio>
#include <exception>
#include <vector>

namespace {

bool same(const std::vector<float>& got, const std::vector<float>& want) {
  return got == want;  // small integers: float arithmetic is exact here
}

void print(const char* name, const std::vector<float>& values) {
  std::printf(" %s=[", name);
  for (std::size_t i = 0; i < values.size(); ++i) std::printf(i ? " %g" : "%g", double(values[i]));
  std::printf("]");
}

}  // namespace

int main() {
  try {
    auto a = ladon::tensor(std::vector<float>{1, 2, 3, 4}, ladon::Shape{2, 2});
    auto b = ladon::tensor(std::vector<float>{5, 6, 7, 8}, ladon::Shape{2, 2});
    a.requires_grad_();
    b.requires_grad_();
    auto c = ladon::matmul(a, b);  // [[19, 22], [43, 50]]
    auto loss = ladon::sum(c);     // 134
    loss.backward();

    // d sum(A B) / dA = 1 B^T: each row holds B's row sums; d/dB = A^T 1: A's column sums.
    const std::vector<float> want_c{19, 22, 43, 50}, want_ga{11, 15, 11, 15}, want_gb{4, 4, 6, 6};
    const auto got_c = c.to_vector<float>();
    const auto got_ga = a.grad().to_vector<float>();
    const auto got_gb = b.grad().to_vector<float>();
    const double got_loss = loss.item();

    std::printf("consumer: loss=%g", got_loss);
    print("c", got_c);
    print("grad_a", got_ga);
    print("grad_b", got_gb);
    std::printf("\n");
    if (got_loss != 134 || !same(got_c, want_c) || !same(got_ga, want_ga) || !same(got_gb, want_gb)) {
      std::printf("consumer: MISMATCH (want loss=134 c=[19 22 43 50] grad_a=[11 15 11 15] "
                  "grad_b=[4 4 6 6])\n");
      return 1;
    }
    std::printf("consumer: ok\n");
    return 0;
  } catch (const std::exception& e) {
    std::printf("consumer: error: %s\n", e.what());
    return 1;
  }
}
