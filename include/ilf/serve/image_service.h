// The image service behind `ilf_serve`: one model loaded once, a bounded queue of generation requests,
// and one worker that runs them, joining queued requests whose sampling plans agree (method and its
// settings, steps, solver, guidance, image size) into one batch of up to `max_batch` images. Each
// request keeps its own seed, so an image is the same whether its request ran alone or batched.
// The HTTP layer (serve/http_server.h) only parses transport and calls this class; everything a request
// may set, and every limit, is checked here. Sampling and PNG encoding are the library's (pipelines/).
//
// Requests (the body of POST /v1/images/generations and POST /v1/jobs, OpenAI's images API plus ours):
//   prompt (required): text for a text-to-image model; for a class-to-image model a class index ("3")
//                      or one of the model's class names ("sneaker")
//   n (1..max_images_per_request, default 1), size ("WIDTHxHEIGHT"; default and, for class-to-image,
//   only the model's own), response_format ("b64_json"; "url" is refused), model (the served id), user
//   (ignored), and ours: seed (default 0; image i of a text-to-image request has seed + i, a
//   class-to-image request draws its n noises from one generator seeded with seed, as ilf_sample does),
//   steps, method, guidance_scale, negative_prompt (text-to-image), settings (an object of dotted config
//   keys as `--set` takes them, e.g. {"ilf.strength": 1.0, "cache.interval": 3}, read by the run-config
//   parser; keys that name files are refused).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ilf/error.h"
#include "ilf/io/config.h"
#include "ilf/pipelines/loading.h"

namespace ilf::serve {

// A request the service refuses or could not finish, as the HTTP status and OpenAI's error object
// {"error": {"message", "type", "param", "code"}}.
class RequestError : public Error {
 public:
  RequestError(int status, const std::string& message, std::string param = "", std::string type = "invalid_request_error")
      : Error(message), status_(status), param_(std::move(param)), type_(std::move(type)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }  // the request field at fault ("" = none)
  const std::string& type() const { return type_; }
  // {"error": {"message": ..., "type": ..., "param": ... or null, "code": null}}
  std::string to_json() const;

 private:
  int status_;
  std::string param_, type_;
};

struct ServiceOptions {
  int64_t max_batch = 8;                // images per sampling run; 1 = no batching across requests
  int64_t max_queue = 64;               // requests waiting to run; one more gets 429
  int64_t max_images_per_request = 10;  // "n"
  int64_t max_steps = 200;              // "steps"
  int64_t max_image_side = 2048;        // "size", either side, pixels
  double request_timeout_s = 600;       // from submission to the last image; then the request fails (504)
  int64_t max_jobs_kept = 1000;         // finished jobs remembered for GET /v1/jobs/{id} (oldest dropped)
  std::string device = "auto";          // util/device.h
  std::string model_id;                 // the "model" the service answers to ("" = the config's file stem)
  std::string config_label;             // the config recorded in each PNG's "ilf" metadata, as ilf_sample does

  void validate() const;  // throws ilf::Error naming the option
};

// A request after parsing: the OpenAI fields and our settings, every value checked.
struct ImageRequest {
  std::string prompt;
  std::string model;  // "" = not given; else it must be the served model's id
  int64_t n = 1;
  int64_t width = 0, height = 0;  // 0 = the model's own
  uint64_t seed = 0;
  std::optional<std::string> negative_prompt;
  Json overrides = Json::object();  // dotted config keys -> values: steps, method, guidance_scale, settings
};

// Parses and checks an OpenAI images request body (JSON). Throws RequestError(400) naming the field:
// malformed JSON, an unknown field, a wrong type, a value out of its range, response_format "url".
ImageRequest parse_image_request(const std::string& body, const ServiceOptions& options);

enum class JobState { kQueued, kRunning, kDone, kFailed, kCancelled };
const char* to_string(JobState state);

struct GeneratedImage {
  std::string png;  // the PNG file's bytes, with the settings in its "ilf" text chunk (as ilf_sample writes them)
  uint64_t seed = 0;
};

struct JobStatus {
  std::string id;
  JobState state = JobState::kQueued;
  int64_t step = 0, steps = 0;         // running: step k of n
  std::vector<GeneratedImage> images;  // done
  int error_status = 0;                // failed: the HTTP status (400 bad settings, 500 sampling, 504 timeout)
  std::string error;                   // failed: the message
  int64_t created = 0;                 // unix seconds (OpenAI's "created")
  int64_t block_forwards = 0;          // of the sampling run that made the images (per image, as --plan counts)
  int64_t batch_images = 0;            // images of that sampling run (this request's and those batched with it)
};

// The run config of a service, as ilf_sample loads it: text-to-image when a model folder is named
// (`model_folder` or "model.folder") or the config names a text encoder (then the guidance scale defaults
// to the PixArt pipelines' 4.5), class-to-image otherwise. `source` names the config in messages.
LoadedRunConfig load_service_config(Json json, const std::string& source, const std::string& model_folder = "");

class ImageService {
 public:
  // Loads the model of `loaded` (class-to-image or text-to-image, as ilf_sample decides: a model folder /
  // text encoder -> text-to-image) and starts the worker. Throws ilf::Error as ilf_sample would.
  ImageService(LoadedRunConfig loaded, ServiceOptions options);
  ~ImageService();  // stops the worker (queued jobs are cancelled)
  ImageService(const ImageService&) = delete;
  ImageService& operator=(const ImageService&) = delete;

  const ServiceOptions& options() const;
  // GET /v1/models: {"object": "list", "data": [{"id", "object": "model", "created", "owned_by": "ilf", ...}]}
  Json models() const;

  using Callback = std::function<void(const JobStatus&)>;
  // Queues a request and returns its job id. `on_finished` is called once, from the worker thread, when
  // the job is done, failed or cancelled. Throws RequestError: 429 when the queue is full, 503 when
  // draining, 400 for settings the config parser refuses (checked before queueing).
  std::string submit(const ImageRequest& request, Callback on_finished = nullptr);
  std::optional<JobStatus> status(const std::string& id) const;
  // Cancels a queued job at once and a running one before its batch's next step (the batch goes on for
  // the other requests in it). false: no such job; a finished job stays as it is (returns true).
  bool cancel(const std::string& id);

  // Stops accepting (submit throws 503) and returns once every accepted job has finished.
  void drain();
  bool draining() const;

  // For GET /metrics: the HTTP layer reports each answered request.
  void record_http(const std::string& endpoint, int status, double seconds);
  // Prometheus text format: ilf_http_requests_total{endpoint,status}, ilf_queue_depth, ilf_running_images,
  // ilf_images_total, ilf_block_forwards_total, ilf_batches_total, ilf_request_duration_seconds histogram.
  std::string metrics_text() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ilf::serve
