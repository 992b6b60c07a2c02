// ilf_serve: an image-generation server with OpenAI's images API (POST /v1/images/generations), plus
// asynchronous jobs, the model list, a health check and Prometheus metrics (serve/http_server.h). The
// model is loaded once, as ilf_sample loads it, and requests whose sampling settings agree are batched.
//   class-to-image (DiT):   ilf_serve --config configs/fashion_mnist.json --port 8080
//   text-to-image (PixArt): ilf_serve --model-folder models/pixart_sigma_1024 --api-key-file key.txt
//   curl -s localhost:8080/v1/images/generations -d '{"prompt": "sneaker", "n": 2}'
// It listens on loopback unless --host says otherwise; a server reachable from other machines should
// have an API key (--api-key-file). SIGTERM / SIGINT: new requests get 503, accepted ones are answered,
// then it exits 0.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/config/run_config.h"
#include "ilf/pipelines/loading.h"
#include "ilf/sampling/sampler.h"
#include "ilf/serve/http_server.h"
#include "ilf/serve/image_service.h"
#include "tool_common.h"

using namespace ilf;

namespace {

struct Args {
  std::string config = "configs/fashion_mnist.json";  // text-to-image: none unless given
  std::string model_folder, api_key_file;
  std::vector<std::string> overrides;
  serve::ServiceOptions service;
  serve::ServerOptions server;
};

// The URL printed once listening: an IPv6 address goes in brackets.
std::string url(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return "http://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

int run(Args& args, bool config_given) {
  args.service.validate();
  if (!args.api_key_file.empty()) args.server.api_key = serve::read_api_key_file(args.api_key_file);
  args.server.validate();
  // The config as ilf_sample loads it (serve::load_service_config: a model folder or a text encoder makes
  // the service text-to-image); with --model-folder alone, no config file.
  const std::string config_path = !args.model_folder.empty() && !config_given ? "" : args.config;
  const std::string source = config_path.empty() ? "ilf_serve" : config_path;
  LoadedRunConfig loaded =
      serve::load_service_config(read_run_config_json(config_path, args.overrides), source, args.model_folder);
  const bool text_to_image = loaded.folder.has_value() || !loaded.config.text.encoder.empty();
  if (config_given || !text_to_image) args.service.config_label = args.config;  // as ilf_sample records it
  serve::ImageService service(std::move(loaded), args.service);
  return serve::run_server(service, args.server, [&args](int port) {
    std::cout << "ilf_serve: listening on " << url(args.server.host, port) << std::endl;  // endl: flushed for scripts
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_serve: an image-generation server with the OpenAI images API"};
  Args args;
  serve::ServiceOptions& service = args.service;
  serve::ServerOptions& server = args.server;
  app.add_option("--config", args.config, "run config (JSON); text-to-image: none by default (--model-folder)")
      ->capture_default_str();
  app.add_option("--model-folder", args.model_folder, "text-to-image: model folder with model.json (overrides model.folder)");
  app.add_option("--set", args.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--host", server.host, "address to listen on (other than loopback: reachable from other machines)")
      ->capture_default_str()
      ->check(
          CLI::Validator([](std::string& text) -> std::string { return text.empty() ? "expected an address or host name" : ""; },
                         "ADDRESS", "Address"));
  app.add_option("--port", server.port, "port to listen on (0: any free port, printed once listening)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--api-key-file", args.api_key_file,
                 "file holding the API key that every request but GET /health must send as \"Authorization: Bearer KEY\" "
                 "(default: no authentication)")
      ->check(cli::NonEmpty);
  app.add_option("--max-batch", service.max_batch, "images per sampling run (1: no batching across requests)")
      ->capture_default_str()
      ->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--max-queue", service.max_queue, "requests waiting to run; one more gets 429")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--max-images-per-request", service.max_images_per_request, "largest \"n\" of a request")
      ->capture_default_str()
      ->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--max-steps", service.max_steps, "largest \"steps\" of a request")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--max-image-side", service.max_image_side, "largest width or height of a request's \"size\", pixels")
      ->capture_default_str()
      ->transform(cli::CountUpTo(kMaxImageSide));
  app.add_option("--max-body-bytes", server.max_body_bytes, "largest request body; a larger one gets 413")
      ->capture_default_str()
      ->transform(cli::CountUpTo(int64_t{1} << 30));
  app.add_option("--request-timeout", service.request_timeout_s,
                 "seconds from a request's submission to its last image; then it fails with 504")
      ->capture_default_str()
      ->check(cli::FinitePositive);
  app.add_option("--read-timeout", server.read_timeout_s,
                 "seconds within which a whole request (headers and body) must arrive; an idle connection is closed after it")
      ->capture_default_str()
      ->check(cli::FinitePositive);
  app.add_option("--device", service.device, "auto (CUDA when the build and machine have it), cpu or cuda")
      ->capture_default_str();
  app.add_option("--model-id", service.model_id, "the \"model\" the server answers to (default: the config's file stem)");
  if (const int code = cli::parse(app, argc, argv, "ilf_serve"); code >= 0) return code;
  try {
    return run(args, app.count("--config") > 0);
  } catch (...) {
    return cli::report_error("ilf_serve");
  }
}
