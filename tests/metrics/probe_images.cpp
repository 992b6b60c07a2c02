// The image-side subcommands of ilf_metric_probe (metric_probe.h): what tests/metrics/check_clean_fid.py
// and check_lpips_ssim.py compare with Pillow, clean-fid, lpips and torchmetrics. Each reads its inputs
// from a safetensors file (or a folder / .npz as a user's files are) and writes what the library returns
// to a safetensors file.
//
//   ilf_metric_probe pil-resize --in I.safetensors --out O.safetensors
//     for every case K: `K.image` uint8 (H, W, C) or float32 (H, W), `K.spec` int64 [height, width, filter]
//     (filter 0 nearest, 1 bilinear, 2 bicubic, 3 lanczos) -> `K.out`
//   ilf_metric_probe clean-fid-resize --in I.safetensors --out O.safetensors
//     every uint8 (N, 3, H, W) tensor K -> `K` float32 (N, 3, 299, 299) (clean_fid_resize)
//   ilf_metric_probe fid-folder --images DIR --inception F.pt [--batch B] --out O.safetensors
//     -> `features` (N, D) float32, `mu` (D,), `sigma` (D, D) float64 (clean_fid_folder_features,
//     feature_statistics), the files in order in the metadata (`files`, newline-separated)
//   ilf_metric_probe fid-statistics --in I.safetensors --out O.safetensors
//     `a`, `b` features (N, D) -> `mu_a`, `sigma_a`, `mu_b`, `sigma_b`, `distance` (1,) float64
//   ilf_metric_probe fid-distance --a A.npz --b B.npz --out O.safetensors
//     -> `distance` (1,) float64 between two statistics files (read_fid_statistics, frechet_distance)
//   ilf_metric_probe npz-read --in S.npz --out O.safetensors   -> `mu`, `sigma` float64
//   ilf_metric_probe npz-write --in I.safetensors --out S.npz  `mu`, `sigma` -> write_fid_statistics
//   ilf_metric_probe read-png --in F.png --out O.safetensors   -> `image` uint8 (H, W, C)
//   ilf_metric_probe lpips --weights W.safetensors --in I.safetensors --out O.safetensors
//     `images`, `references` uint8 (N, 3, H, W) -> `distances` (N,) float64
//   ilf_metric_probe ssim --in I.safetensors --out O.safetensors
//     `images`, `references` uint8 (N, C, H, W) -> `ssim` (N,) float64
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "ilf/error.h"
#include "ilf/eval/clean_fid.h"
#include "ilf/eval/lpips.h"
#include "ilf/eval/metrics.h"
#include "ilf/eval/pil_resize.h"
#include "ilf/io/image.h"
#include "ilf/io/safetensors.h"
#include "metric_probe.h"
#include "tool_common.h"

using namespace ilf;

namespace {

PilFilter probe_filter(int64_t code) {
  switch (code) {
    case 0: return PilFilter::kNearest;
    case 1: return PilFilter::kBilinear;
    case 2: return PilFilter::kBicubic;
    case 3: return PilFilter::kLanczos;
    default: throw Error("unknown filter code " + std::to_string(code));
  }
}

int run_pil_resize(int argc, char** argv) {
  CLI::App app{"PIL-exact resize of every case in a safetensors file"};
  std::string in, out;
  app.add_option("--in", in)->required();
  app.add_option("--out", out)->required();
  if (const int code = cli::parse(app, argc, argv, "ilf_metric_probe pil-resize"); code >= 0) return code;
  try {
    const SafetensorsFile file = read_safetensors(in);
    TensorMap results;
    for (const auto& [name, tensor] : file.tensors) {
      const std::string suffix = ".image";
      if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
      const std::string key = name.substr(0, name.size() - suffix.size());
      const torch::Tensor spec = require_tensor(file.tensors, key + ".spec", in);  // (3,) int64
      const int64_t height = spec[0].item<int64_t>(), width = spec[1].item<int64_t>();
      const PilFilter filter = probe_filter(spec[2].item<int64_t>());
      results[key + ".out"] = tensor.scalar_type() == torch::kUInt8 ? pil_resize_uint8(tensor, height, width, filter)
                                                                    : pil_resize_float(tensor, height, width, filter);
    }
    write_safetensors(out, results);
    return 0;
  } catch (...) {
    return cli::report_error("ilf_metric_probe pil-resize");
  }
}

// The common frame of the subcommands below: parse --in / --out (and extra flags), run, report.
template <typename Body>
int probe_run(int argc, char** argv, const char* name, std::vector<std::pair<std::string, std::string*>> flags, Body body) {
  CLI::App app{name};
  for (auto& [flag, value] : flags) app.add_option(flag, *value)->required();
  if (const int code = cli::parse(app, argc, argv, std::string("ilf_metric_probe ") + name); code >= 0) return code;
  try {
    body();
    return 0;
  } catch (...) {
    return cli::report_error(std::string("ilf_metric_probe ") + name);
  }
}

int run_clean_fid_resize(int argc, char** argv) {
  std::string in, out;
  return probe_run(argc, argv, "clean-fid-resize", {{"--in", &in}, {"--out", &out}}, [&] {
    TensorMap results;
    for (const auto& [name, images] : read_safetensors(in).tensors) results[name] = clean_fid_resize(images);
    write_safetensors(out, results);
  });
}

int run_fid_folder(int argc, char** argv) {
  std::string images, inception, batch = "7", out;
  return probe_run(
      argc, argv, "fid-folder", {{"--images", &images}, {"--inception", &inception}, {"--batch", &batch}, {"--out", &out}}, [&] {
        const CleanFidExtractorPtr extractor = load_clean_fid_extractor(inception, torch::kCPU);
        std::vector<std::string> files;
        const torch::Tensor features = clean_fid_folder_features(*extractor, images, std::stoll(batch), &files);
        const FeatureStatistics s = feature_statistics(features);
        std::string names;
        for (const auto& f : files) names += f + "\n";
        write_safetensors(out, {{"features", features}, {"mu", s.mean}, {"sigma", s.covariance}}, {{"files", names}});
      });
}

int run_fid_statistics(int argc, char** argv) {
  std::string in, out;
  return probe_run(argc, argv, "fid-statistics", {{"--in", &in}, {"--out", &out}}, [&] {
    const SafetensorsFile file = read_safetensors(in);
    const FeatureStatistics a = feature_statistics(require_tensor(file.tensors, "a", in));
    const FeatureStatistics b = feature_statistics(require_tensor(file.tensors, "b", in));
    write_safetensors(out, {{"mu_a", a.mean},
                            {"sigma_a", a.covariance},
                            {"mu_b", b.mean},
                            {"sigma_b", b.covariance},
                            {"distance", torch::tensor({frechet_distance(a, b)}, torch::kFloat64)}});
  });
}

int run_fid_distance(int argc, char** argv) {
  std::string a, b, out;
  return probe_run(argc, argv, "fid-distance", {{"--a", &a}, {"--b", &b}, {"--out", &out}}, [&] {
    const double d = frechet_distance(read_fid_statistics(a), read_fid_statistics(b));
    write_safetensors(out, {{"distance", torch::tensor({d}, torch::kFloat64)}});
  });
}

int run_npz_read(int argc, char** argv) {
  std::string in, out;
  return probe_run(argc, argv, "npz-read", {{"--in", &in}, {"--out", &out}}, [&] {
    const FeatureStatistics s = read_fid_statistics(in);
    write_safetensors(out, {{"mu", s.mean}, {"sigma", s.covariance}});
  });
}

int run_npz_write(int argc, char** argv) {
  std::string in, out;
  return probe_run(argc, argv, "npz-write", {{"--in", &in}, {"--out", &out}}, [&] {
    const SafetensorsFile file = read_safetensors(in);
    FeatureStatistics s;
    s.mean = require_tensor(file.tensors, "mu", in);
    s.covariance = require_tensor(file.tensors, "sigma", in);
    write_fid_statistics(out, s);
  });
}

int run_read_png(int argc, char** argv) {
  std::string in, out;
  return probe_run(argc, argv, "read-png", {{"--in", &in}, {"--out", &out}}, [&] {
    write_safetensors(out, {{"image", read_png(in)}});
  });
}

int run_lpips(int argc, char** argv) {
  std::string weights, in, out;
  return probe_run(argc, argv, "lpips", {{"--weights", &weights}, {"--in", &in}, {"--out", &out}}, [&] {
    const SafetensorsFile file = read_safetensors(in);
    const LpipsModelPtr model = load_lpips(weights, torch::kCPU);
    write_safetensors(out, {{"distances", lpips_distances(*model, require_tensor(file.tensors, "images", in),
                                                          require_tensor(file.tensors, "references", in))}});
  });
}

int run_ssim(int argc, char** argv) {
  std::string in, out;
  return probe_run(argc, argv, "ssim", {{"--in", &in}, {"--out", &out}}, [&] {
    const SafetensorsFile file = read_safetensors(in);
    write_safetensors(
        out,
        {{"ssim", ssim_per_image(require_tensor(file.tensors, "images", in), require_tensor(file.tensors, "references", in))}});
  });
}

const test::ProbeRegistration probe_pil_resize_registration("pil-resize", &run_pil_resize);
const test::ProbeRegistration probe_clean_fid_resize_registration("clean-fid-resize", &run_clean_fid_resize);
const test::ProbeRegistration probe_fid_folder_registration("fid-folder", &run_fid_folder);
const test::ProbeRegistration probe_fid_statistics_registration("fid-statistics", &run_fid_statistics);
const test::ProbeRegistration probe_fid_distance_registration("fid-distance", &run_fid_distance);
const test::ProbeRegistration probe_npz_read_registration("npz-read", &run_npz_read);
const test::ProbeRegistration probe_npz_write_registration("npz-write", &run_npz_write);
const test::ProbeRegistration probe_read_png_registration("read-png", &run_read_png);
const test::ProbeRegistration probe_lpips_registration("lpips", &run_lpips);
const test::ProbeRegistration probe_ssim_registration("ssim", &run_ssim);

}  // namespace
