// ilf_eval: evaluates one sampling setting of a class-conditional model, or with --prompts-file of a
// text-to-image model (FID, class accuracy, fidelity to same-seed reference samples, block forwards,
// seconds per image; see pipelines/evaluation.h). Writes one JSON object to --out (atomically) and
// prints it.
//   ilf_eval --config configs/fashion_mnist.json --num-samples 5000
//   ilf_eval --config configs/fashion_mnist_t2i.json --model-folder models/fashion_mnist_t2i
//            --prompts-file models/fashion_mnist_t2i/captions_eval.txt --num-samples 1000   (one line)
#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/pipelines/evaluation.h"
#include "ilf/pipelines/loading.h"
#include "ilf/sampling/sampler.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"ilf_eval: FID, class accuracy, fidelity and cost of one sampling setting"};
  std::string config = "configs/fashion_mnist.json", out, model_folder, prompts_file;
  std::vector<std::string> overrides;
  EvalRequest request;
  app.add_option("--config", config, "run config (JSON)")->capture_default_str();
  app.add_option("--set", overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--num-samples", request.num_samples, "samples to generate")->capture_default_str()->transform(cli::Count);
  app.add_option("--batch", request.batch, "samples per sampling batch")
      ->capture_default_str()
      ->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--seed", request.seed, "base seed of the initial noise")->capture_default_str()->transform(cli::Seed);
  app.add_option("--write-samples", request.write_samples, "save the generated samples (safetensors) for later fidelity runs")
      ->check(cli::NonEmpty);
  app.add_option("--reference-samples", request.reference_samples, "same-seed reference samples for MSE/PSNR");
  app.add_option("--label", request.label, "a name for this row in reports");
  app.add_option("--out", out, "metrics JSON file")->check(cli::NonEmpty);
  app.add_option("--device", request.device, "auto (CUDA when the build and machine have it), cpu or cuda")
      ->capture_default_str();
  app.add_flag("--quiet", request.quiet, "no progress lines (a live line on a terminal, whole lines on a pipe or file)");
  app.add_option("--model-folder", model_folder, "text-to-image: model folder with model.json");
  app.add_option("--prompts-file", prompts_file, "text-to-image: lines \"class<TAB>caption\" (the class judges accuracy)");
  if (const int code = cli::parse(app, argc, argv, "ilf_eval"); code >= 0) return code;
  try {
    if (!model_folder.empty() && prompts_file.empty()) throw Error("--model-folder needs --prompts-file (text-to-image)");
    // Before the evaluation runs (minutes to hours), not after: the outputs can be written.
    if (!out.empty()) check_output_path(out, "--out");
    if (!request.write_samples.empty()) check_output_path(request.write_samples, "--write-samples");
    const LoadedRunConfig loaded = load_tool_config(config, overrides, model_folder);
    const std::string text = (prompts_file.empty() ? evaluate_class_to_image(loaded.config, request)
                                                   : evaluate_text_to_image(loaded, read_labelled_prompts(prompts_file), request))
                                 .dump(2);
    if (!out.empty()) write_file_atomically(out, [&](std::ostream& o) { o << text << "\n"; });
    std::cout << text << std::endl;
    return 0;
  } catch (...) {
    return cli::report_error("ilf_eval");
  }
}
