// FID and fidelity metrics checked against closed forms.
#include <gtest/gtest.h>

#include <cmath>

#include "ilf/eval/metrics.h"

using namespace ilf;

TEST(Frechet, IdenticalStatisticsGiveZero) {
  torch::manual_seed(0);
  const auto s = feature_statistics(torch::randn({500, 16}, torch::kFloat64));
  EXPECT_NEAR(frechet_distance(s, s), 0.0, 1e-9);
}

TEST(Frechet, MatchesTheClosedFormForCommutingCovariances) {
  // With S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
  torch::manual_seed(1);
  const int64_t d = 8;
  const auto q = std::get<0>(at::linalg_qr(torch::randn({d, d}, torch::kFloat64), "reduced"));
  const auto a = torch::rand({d}, torch::kFloat64) + 0.1, b = torch::rand({d}, torch::kFloat64) * 3 + 0.1;
  FeatureStatistics s1{torch::randn({d}, torch::kFloat64), q.matmul(torch::diag(a)).matmul(q.t()), 100};
  FeatureStatistics s2{torch::randn({d}, torch::kFloat64), q.matmul(torch::diag(b)).matmul(q.t()), 100};
  const double expected = (s1.mean - s2.mean).pow(2).sum().item<double>() + (a.sqrt() - b.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(frechet_distance(s1, s2), expected, 1e-9);
  EXPECT_NEAR(frechet_distance(s2, s1), expected, 1e-9);
}

TEST(Frechet, StatisticsUseTheUnbiasedCovariance) {
  const auto f = torch::tensor({1.0, 2.0, 4.0}, torch::kFloat64).reshape({3, 1});
  const auto s = feature_statistics(f);
  EXPECT_NEAR(s.mean.item<double>(), 7.0 / 3.0, 1e-12);
  EXPECT_NEAR(s.covariance.item<double>(),
              ((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) + (4 - 7.0 / 3) * (4 - 7.0 / 3)) / 2, 1e-12);
}

TEST(Fidelity, PsnrAndMseFollowTheirDefinitions) {
  const auto ref = torch::zeros({2, 1, 4, 4});
  const auto img = torch::full({2, 1, 4, 4}, 0.1);
  EXPECT_NEAR(mean_squared_error(img, ref), 0.01, 1e-9);
  EXPECT_NEAR(mean_psnr(img, ref), 10 * std::log10(4.0 / 0.01), 1e-6);
  EXPECT_TRUE(std::isinf(mean_psnr(ref, ref)));
}
