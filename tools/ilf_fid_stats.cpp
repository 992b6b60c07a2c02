// ilf_fid_stats: writes the clean-fid statistics (mu, sigma in its .npz format) of a folder of PNG
// images, so that a reference set (MJHQ-30K's images, or a reference setting's samples) is measured
// once and every evaluation run compares against the file (eval/clean_fid.h: clean-fid's mode "clean",
// its resize, the Inception TorchScript file it uses). The file appears only when every image was read
// and measured (written atomically).
//   ilf_fid_stats --images DIR --inception inception-2015-12-05.pt --out stats.npz [--batch 32] [--device cuda]
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <iostream>

#include "ilf/error.h"
#include "ilf/eval/clean_fid.h"
#include "ilf/util/device.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"ilf_fid_stats: clean-fid statistics (.npz: mu, sigma) of every PNG in a folder"};
  std::string images, inception, out, device_name = "auto";
  int64_t batch = 32;
  app.add_option("--images", images, "folder of PNG images (searched recursively, as clean-fid does)")->required();
  app.add_option("--inception", inception, "Inception TorchScript file (inception-2015-12-05.pt)")->required();
  app.add_option("--out", out, "statistics file to write (.npz, clean-fid's format)")->required()->check(cli::NonEmpty);
  app.add_option("--batch", batch, "images per Inception forward")->capture_default_str()->transform(cli::Count);
  app.add_option("--device", device_name, "auto (CUDA when the build and machine have it), cpu or cuda")->capture_default_str();
  if (const int code = cli::parse(app, argc, argv, "ilf_fid_stats"); code >= 0) return code;
  try {
    const torch::Device device = resolve_device(device_name);
    const CleanFidExtractorPtr extractor = load_clean_fid_extractor(inception, device);
    const FeatureStatistics statistics = clean_fid_folder_statistics(*extractor, images, batch);
    write_fid_statistics(out, statistics);
    std::cout << "ilf_fid_stats: " << statistics.count << " images, " << statistics.mean.size(0) << "-d features -> " << out
              << std::endl;
    return 0;
  } catch (...) {
    return cli::report_error("ilf_fid_stats");
  }
}
