// FID as clean-fid computes it in mode "clean": every uint8 image resized to 299 x 299 with PIL's bicubic
// filter per channel in float ("F" mode, eval/pil_resize.h), clipped to [0, 255], fed to the Inception
// TorchScript file clean-fid uses (called as module(x, return_features=True) on float 0..255 input), the
// 2048-d features' statistics in float64, and the Frechet distance (eval/metrics.h) against reference
// statistics stored in clean-fid's own .npz format (arrays "mu" and "sigma").
// The call, exactly as clean-fid's InceptionV3W wrapper makes it in mode "clean" (resize_inside=False):
// the file's `layers` submodule on (x - 128) / 128, the output viewed as (N, D). A TorchScript file
// without `layers` is called as module.forward(x, return_features=True) (the real file's own entry,
// which normalises the same way after resampling to 299 x 299, an identity up to round-off there).
#pragma once
#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "ilf/eval/metrics.h"

namespace ilf {

class CleanFidExtractor;  // defined in src/eval/clean_fid.cpp
using CleanFidExtractorPtr = std::shared_ptr<CleanFidExtractor>;

// Loads the Inception TorchScript file (inception-2015-12-05.pt, or any module with the same call).
CleanFidExtractorPtr load_clean_fid_extractor(const std::string& path, const torch::Device& device);

// images uint8 (N, 3, H, W) -> float32 (N, 3, 299, 299) in [0, 255], clean-fid's "clean" resize.
torch::Tensor clean_fid_resize(const torch::Tensor& images);
// images uint8 (N, 3, H, W) -> features (N, D) float32.
torch::Tensor clean_fid_features(CleanFidExtractor& extractor, const torch::Tensor& images);

// The images of a folder as clean-fid lists them: recursively, hidden names skipped, sorted by path;
// PNG only (another image type clean-fid would include is an error naming it; so is a folder without
// PNGs).
std::vector<std::string> clean_fid_list_images(const std::string& folder);
// The features (N, D) float32 of every image of a folder (read_png, converted to RGB as PIL's
// convert("RGB"), resized, batch_size images per forward); files_out (optional) gets the files in order.
torch::Tensor clean_fid_folder_features(CleanFidExtractor& extractor, const std::string& folder, int64_t batch_size,
                                        std::vector<std::string>* files_out = nullptr);
// Their statistics (at least 2 images). Errors name the folder or the file (corrupt PNG, unreadable file).
FeatureStatistics clean_fid_folder_statistics(CleanFidExtractor& extractor, const std::string& folder, int64_t batch_size);

// clean-fid's statistics files: .npz with float64 "mu" (D,) and "sigma" (D, D) (np.savez or
// np.savez_compressed). Errors name the file and what is wrong (missing array, wrong shape or dtype).
FeatureStatistics read_fid_statistics(const std::string& path);
void write_fid_statistics(const std::string& path, const FeatureStatistics& statistics);  // atomically

}  // namespace ilf
