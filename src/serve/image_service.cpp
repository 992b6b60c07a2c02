// The image service (see include/ilf/serve/image_service.h): the model loaded once, a bounded queue,
// one worker thread that joins requests with the same settings into batches, async jobs, and the
// counters GET /metrics shows. Only the worker touches the model and LibTorch; the HTTP threads queue,
// look up and cancel jobs under one mutex.
//
// A batch: the oldest queued request, then every later queued one whose settings agree (the config the
// request makes, the image size, the negative prompt), up to max_batch images; a request is never split.
// Each request brings its own noise (class-to-image: randn(n, ...) of a generator seeded with its seed,
// as ilf_sample draws it; text-to-image: one generator per image, seed + i), so its images do not depend
// on what it was batched with. A batch whose sampling fails is run again request by request, so a request
// that fails inside sampling fails alone.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "ilf/accel/registry.h"
#include "ilf/io/image.h"
#include "ilf/pipelines/class_to_image.h"
#include "ilf/pipelines/sample_files.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/sampling/solvers.h"
#include "ilf/serve/image_service.h"
#include "ilf/util/checks.h"
#include "ilf/util/device.h"
#include "ilf/util/strings.h"
#include "request_settings.h"

namespace ilf::serve {

LoadedRunConfig load_service_config(Json json, const std::string& source, const std::string& model_folder) {
  SampleFilesRequest request;
  const bool names_folder =
      !model_folder.empty() || (json.contains("model") && json["model"].is_object() && json["model"].contains("folder"));
  const bool names_encoder = json.contains("text") && json["text"].is_object() && json["text"].contains("encoder");
  if (names_folder || names_encoder) request.prompt = "";  // text-to-image, as ilf_sample --prompt decides it
  request.model_folder = model_folder;
  return load_sample_config(std::move(json), source, request);
}

namespace {

using Clock = std::chrono::steady_clock;

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Thrown from the progress callback when no request of the running batch still wants its images.
struct BatchAbandoned {};

// Puts a cached sampling setup into the model for one run and takes it back afterwards, also when the
// run throws (the setups hold the method objects, which cannot be copied).
class LentSetup {
 public:
  LentSetup(SamplingSetup& model_slot, SamplingSetup& cached) : slot_(model_slot), cached_(cached) { std::swap(slot_, cached_); }
  ~LentSetup() { std::swap(slot_, cached_); }
  LentSetup(const LentSetup&) = delete;
  LentSetup& operator=(const LentSetup&) = delete;

 private:
  SamplingSetup& slot_;
  SamplingSetup& cached_;
};

struct Job {
  std::string id;
  ImageRequest request;
  std::shared_ptr<const RunConfig> config;  // the server's config with the request's settings
  std::string batch_key;                    // requests with equal keys may share a sampling run
  std::vector<int64_t> labels;              // class-to-image: n copies of the class
  ImageSize size;                           // the requested image size (text-to-image)
  Clock::time_point deadline;
  JobStatus status;
  ImageService::Callback callback;
  bool finished = false;
};
using JobPtr = std::shared_ptr<Job>;

// The Prometheus histogram of request durations, one per endpoint.
const std::vector<double>& duration_buckets() {
  static const std::vector<double> buckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
  return buckets;
}
struct Histogram {
  std::vector<int64_t> counts = std::vector<int64_t>(duration_buckets().size(), 0);  // cumulative per bucket
  int64_t count = 0;
  double sum = 0;
};

std::string random_job_id() {
  static std::mutex mutex;
  static std::mt19937_64 engine{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mutex);
  char id[40];
  std::snprintf(id, sizeof(id), "job-%016llx%08llx", static_cast<unsigned long long>(engine()),
                static_cast<unsigned long long>(engine() & 0xffffffffULL));
  return id;
}

bool equal_ignoring_ascii_case(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

struct ImageService::State {
  ServiceOptions options;
  LoadedRunConfig base;
  bool text_to_image = false;
  std::optional<ClassToImageModel> class_model;
  std::optional<TextToImageModel> text_model;
  int64_t created = unix_seconds();
  std::string model_id;

  // Sampling setups (method, feedback module, solver) by the config they were made from; worker only.
  std::map<std::string, SamplingSetup> setups;

  mutable std::mutex mutex;
  std::condition_variable work_ready, idle;
  std::deque<JobPtr> queue;
  std::vector<JobPtr> running;
  std::map<std::string, JobPtr> jobs;
  std::deque<std::string> finished_order;
  bool draining = false, stopping = false;
  std::thread worker;

  // Metrics (under `mutex`).
  std::map<std::pair<std::string, int>, int64_t> http_requests;
  std::map<std::string, Histogram> durations;
  std::map<std::string, int64_t> jobs_by_state;
  int64_t images = 0, block_forwards = 0, batches = 0, batch_images = 0;

  // ---- model-side helpers (worker thread, or the constructor) ----
  int64_t class_image_side() const {
    const Backbone& backbone = *class_model->backbone;
    return backbone.input_size() * (class_model->vae ? class_model->vae->downsampling() : 1);
  }

  int64_t class_label(const std::string& prompt) const {
    const int64_t classes = class_model->num_classes();
    const std::vector<std::string>& names = base.config.class_names;
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (!prompt.empty() && prompt.size() <= 18 && std::all_of(prompt.begin(), prompt.end(), digit)) {
      const int64_t label = std::stoll(prompt);
      if (label < classes) return label;
    }
    for (size_t i = 0; i < names.size(); ++i)
      if (equal_ignoring_ascii_case(names[i], prompt)) return static_cast<int64_t>(i);
    std::string message = "\"prompt\": \"" + abbreviated(prompt, 40) +
                          "\" is not a class of this class-to-image model: give a "
                          "class index from 0 to " +
                          std::to_string(classes - 1);
    if (!names.empty()) message += " or one of the names " + join(names);
    throw RequestError(400, message, "prompt");
  }

  SamplingSetup& setup_for(const RunConfig& config, const std::string& key) {
    auto it = setups.find(key);
    if (it != setups.end()) return it->second;
    if (setups.size() >= 32) setups.clear();  // a bound; settings that come back are rebuilt
    Backbone& backbone = text_to_image ? *text_model->backbone : *class_model->backbone;
    const torch::Device device = text_to_image ? text_model->device : class_model->device;
    return setups.emplace(key, load_sampling(config, backbone, device)).first->second;
  }

  // ---- jobs (callers hold `mutex` unless said otherwise) ----
  // Finishes a job and returns its callback with the status to call outside the lock.
  std::function<void()> finish(Job& job, JobState state, int error_status = 0, const std::string& error = "") {
    if (job.finished) return nullptr;
    job.finished = true;
    job.status.state = state;
    job.status.error_status = error_status;
    job.status.error = error;
    ++jobs_by_state[to_string(state)];
    finished_order.push_back(job.id);
    while (static_cast<int64_t>(finished_order.size()) > options.max_jobs_kept) {
      jobs.erase(finished_order.front());
      finished_order.pop_front();
    }
    ImageService::Callback callback = std::move(job.callback);
    job.callback = nullptr;
    if (!callback) return nullptr;
    return [callback, status = job.status] { callback(status); };
  }

  // Fails the queued and running jobs whose deadline passed.
  void expire(std::vector<std::function<void()>>& calls) {
    const auto now = Clock::now();
    const auto timed_out = [&](const JobPtr& job) {
      if (job->finished || now < job->deadline) return false;
      if (auto call = finish(*job, JobState::kFailed, 504,
                             "the request did not finish within the server's request timeout (" +
                                 number_text(options.request_timeout_s) + " s)"))
        calls.push_back(std::move(call));
      return true;
    };
    queue.erase(std::remove_if(queue.begin(), queue.end(), timed_out), queue.end());
    for (const JobPtr& job : running) timed_out(job);
  }

  void worker_loop();
  void run_batch(const std::vector<JobPtr>& batch);
  std::vector<std::vector<GeneratedImage>> sample_batch(const std::vector<JobPtr>& batch, int64_t& block_forwards_per_run);
};

ImageService::ImageService(LoadedRunConfig loaded, ServiceOptions options) : state_(std::make_unique<State>()) {
  options.validate();
  State& s = *state_;
  s.options = options;
  s.base = std::move(loaded);
  const RunConfig& config = s.base.config;
  s.text_to_image = s.base.folder.has_value() || !config.text.encoder.empty();
  const torch::Device device = resolve_device(options.device);
  if (s.text_to_image) {
    s.text_model = load_text_to_image_model(config, device, s.base.folder ? &*s.base.folder : nullptr);
  } else {
    s.class_model = load_class_to_image_model(config, device);
    if (!config.class_names.empty() && static_cast<int64_t>(config.class_names.size()) != s.class_model->num_classes())
      throw Error(config.source + ": \"class_names\" has " + std::to_string(config.class_names.size()) +
                  " names; the model has " + std::to_string(s.class_model->num_classes()) + " classes");
  }
  s.model_id = !options.model_id.empty() ? options.model_id
               : s.base.folder           ? std::filesystem::path(s.base.folder->path).filename().string()
               : config.source.empty()   ? std::string("ilf")
                                         : std::filesystem::path(config.source).stem().string();
  if (s.model_id.empty()) s.model_id = "ilf";
  s.worker = std::thread([&s] { s.worker_loop(); });
}

ImageService::~ImageService() {
  State& s = *state_;
  std::vector<std::function<void()>> calls;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stopping = true;
    for (const JobPtr& job : s.queue)
      if (auto call = s.finish(*job, JobState::kCancelled, 503, "the server stopped")) calls.push_back(std::move(call));
    s.queue.clear();
    for (const JobPtr& job : s.running)
      if (auto call = s.finish(*job, JobState::kCancelled, 503, "the server stopped")) calls.push_back(std::move(call));
  }
  for (auto& call : calls) call();
  s.work_ready.notify_all();
  if (s.worker.joinable()) s.worker.join();
}

const ServiceOptions& ImageService::options() const { return state_->options; }

Json ImageService::models() const {
  const State& s = *state_;
  const RunConfig& config = s.base.config;
  Json info = {{"kind", s.text_to_image ? "text-to-image" : "class-to-image"},
               {"method", config.sampling.method},
               {"steps", config.sampling.options.steps},
               {"guidance_scale", config.sampling.options.guidance_scale}};
  if (s.text_to_image) {
    info["family"] = s.text_model->family;
    info["resolution"] = s.text_model->resolution();
  } else {
    info["resolution"] = s.class_image_side();
    info["classes"] = s.class_model->num_classes();
    if (!config.class_names.empty()) info["class_names"] = config.class_names;
  }
  return {{"object", "list"},
          {"data",
           Json::array({{{"id", s.model_id}, {"object", "model"}, {"created", s.created}, {"owned_by", "ilf"}, {"ilf", info}}})}};
}

std::string ImageService::submit(const ImageRequest& request, Callback on_finished) {
  State& s = *state_;
  if (!request.model.empty() && request.model != s.model_id)
    throw RequestError(
        404,
        "the model \"" + abbreviated(request.model, 60) + "\" is not served here (this server serves \"" + s.model_id + "\")",
        "model", "invalid_request_error");
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.draining || s.stopping) throw RequestError(503, "the server is shutting down", "", "server_error");
  }
  auto job = std::make_shared<Job>();
  job->request = request;

  // The request's config: the server's with the request's keys, read by the run-config parser.
  Json json = s.base.config.json;
  for (const auto& item : request.overrides.items()) set_dotted_key(json, item.key(), item.value());
  const auto param_of = [&](const std::string& key) {
    return key.rfind("sampling.", 0) == 0 &&
                   (key == "sampling.steps" || key == "sampling.method" || key == "sampling.guidance_scale")
               ? key.substr(9)
               : "settings." + key;
  };
  // Parsed under the server config's name, so that its relative file paths resolve as they did at start;
  // that name is not the client's business and is cut from messages.
  const std::string& source = s.base.config.source;
  std::shared_ptr<RunConfig> config;
  try {
    config = std::make_shared<RunConfig>(parse_run_config(json, source));
  } catch (const Error& e) {
    std::string message = e.what(), param = "settings";
    if (message.rfind(source + ": ", 0) == 0) message = message.substr(source.size() + 2);
    for (const auto& item : request.overrides.items())
      if (message.find(item.key()) != std::string::npos) param = param_of(item.key());
    throw RequestError(400, abbreviated(message, 400), param);
  }
  for (const auto& item : request.overrides.items())
    if (config->file_keys.count(item.key()))
      throw RequestError(400, "settings: \"" + item.key() + "\" names a file; a request cannot name files", param_of(item.key()));
  if (config->sampling.options.steps > s.options.max_steps)
    throw RequestError(400, "steps: at most " + std::to_string(s.options.max_steps) + " (--max-steps)", "steps");
  // The plan, made without weights, finds impossible method settings before the request is queued.
  try {
    const AccelerationMethodPtr method = make_acceleration_method(*config);
    const SolverPtr solver = make_solver(config->sampling.solver);
    const Backbone& backbone = s.text_to_image ? *s.text_model->backbone : *s.class_model->backbone;
    plan_sampling(*method, *solver, config->sampling.options.steps, backbone.depth());
  } catch (const Error& e) {
    throw RequestError(400, abbreviated(e.what(), 400), "settings");
  }

  std::string key = config->json.dump();
  if (s.text_to_image) {
    if (request.width || request.height) {
      if (!request.width || !request.height) throw RequestError(400, "\"size\" needs both sides", "size");
    }
    job->size = {request.height, request.width};
    try {
      generation_size(*s.text_model, job->size, true);
    } catch (const Error& e) {
      throw RequestError(400, "\"size\": " + std::string(e.what()), "size");
    }
    key += "|" + std::to_string(request.width) + "x" + std::to_string(request.height) + "|" +
           (request.negative_prompt ? "n:" + *request.negative_prompt : std::string("-"));
  } else {
    if (request.negative_prompt) throw RequestError(400, "\"negative_prompt\" is for text-to-image models", "negative_prompt");
    const int64_t side = s.class_image_side();
    if ((request.width || request.height) && (request.width != side || request.height != side))
      throw RequestError(
          400, "\"size\": this class-to-image model makes " + std::to_string(side) + "x" + std::to_string(side) + " images only",
          "size");
    job->labels.assign(static_cast<size_t>(request.n), s.class_label(request.prompt));
  }
  job->config = config;
  job->batch_key = key;
  job->callback = std::move(on_finished);
  job->status.created = unix_seconds();
  job->status.steps = config->sampling.options.steps;
  job->deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(s.options.request_timeout_s * 1e6));

  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.draining || s.stopping) throw RequestError(503, "the server is shutting down", "", "server_error");
  if (static_cast<int64_t>(s.queue.size()) >= s.options.max_queue)
    throw RequestError(429, "the queue is full (" + std::to_string(s.options.max_queue) + " requests waiting); retry later", "",
                       "rate_limit_error");
  do job->id = random_job_id();
  while (s.jobs.count(job->id));
  job->status.id = job->id;
  s.jobs[job->id] = job;
  s.queue.push_back(job);
  s.work_ready.notify_one();
  return job->id;
}

std::optional<JobStatus> ImageService::status(const std::string& id) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  const auto it = state_->jobs.find(id);
  if (it == state_->jobs.end()) return std::nullopt;
  return it->second->status;
}

bool ImageService::cancel(const std::string& id) {
  State& s = *state_;
  std::function<void()> call;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    const auto it = s.jobs.find(id);
    if (it == s.jobs.end()) return false;
    const JobPtr job = it->second;
    if (job->finished) return true;
    s.queue.erase(std::remove(s.queue.begin(), s.queue.end(), job), s.queue.end());
    call = s.finish(*job, JobState::kCancelled, 409, "the job was cancelled");  // a running batch notices before its next step
  }
  if (call) call();
  s.idle.notify_all();
  return true;
}

void ImageService::drain() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  s.draining = true;
  s.idle.wait(lock, [&] { return s.queue.empty() && s.running.empty(); });
}

bool ImageService::draining() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->draining;
}

void ImageService::record_http(const std::string& endpoint, int status, double seconds) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  ++state_->http_requests[{endpoint, status}];
  Histogram& h = state_->durations[endpoint];
  ++h.count;
  h.sum += seconds;
  for (size_t i = 0; i < duration_buckets().size(); ++i)
    if (seconds <= duration_buckets()[i]) ++h.counts[i];
}

std::string ImageService::metrics_text() const {
  const State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  std::ostringstream out;
  out << "# HELP ilf_http_requests_total HTTP requests answered, by route and status.\n"
      << "# TYPE ilf_http_requests_total counter\n";
  for (const auto& [key, count] : s.http_requests)
    out << "ilf_http_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << count << "\n";
  out << "# HELP ilf_request_duration_seconds Time from a request's arrival to its answer, by route.\n"
      << "# TYPE ilf_request_duration_seconds histogram\n";
  for (const auto& [endpoint, h] : s.durations) {
    for (size_t i = 0; i < duration_buckets().size(); ++i)
      out << "ilf_request_duration_seconds_bucket{endpoint=\"" << endpoint << "\",le=\"" << number_text(duration_buckets()[i])
          << "\"} " << h.counts[i] << "\n";
    out << "ilf_request_duration_seconds_bucket{endpoint=\"" << endpoint << "\",le=\"+Inf\"} " << h.count << "\n"
        << "ilf_request_duration_seconds_sum{endpoint=\"" << endpoint << "\"} " << h.sum << "\n"
        << "ilf_request_duration_seconds_count{endpoint=\"" << endpoint << "\"} " << h.count << "\n";
  }
  int64_t running_images = 0;
  for (const JobPtr& job : s.running) running_images += job->request.n;
  out << "# HELP ilf_queue_depth Requests waiting to run.\n# TYPE ilf_queue_depth gauge\nilf_queue_depth " << s.queue.size()
      << "\n# HELP ilf_running_images Images of the sampling run in progress.\n# TYPE ilf_running_images gauge\n"
      << "ilf_running_images " << running_images << "\n"
      << "# HELP ilf_images_total Images generated.\n# TYPE ilf_images_total counter\nilf_images_total " << s.images << "\n"
      << "# HELP ilf_block_forwards_total Transformer block forwards per image, summed over the images generated.\n"
      << "# TYPE ilf_block_forwards_total counter\nilf_block_forwards_total " << s.block_forwards << "\n"
      << "# HELP ilf_batches_total Sampling runs (batches of requests).\n# TYPE ilf_batches_total counter\n"
      << "ilf_batches_total " << s.batches << "\n"
      << "# HELP ilf_batch_images_total Images of all sampling runs (over ilf_batches_total: the mean batch).\n"
      << "# TYPE ilf_batch_images_total counter\nilf_batch_images_total " << s.batch_images << "\n"
      << "# HELP ilf_jobs_total Requests finished, by how.\n# TYPE ilf_jobs_total counter\n";
  for (const auto& [state, count] : s.jobs_by_state) out << "ilf_jobs_total{state=\"" << state << "\"} " << count << "\n";
  return out.str();
}

// ---- the worker ----

void ImageService::State::worker_loop() {
  while (true) {
    std::vector<JobPtr> batch;
    std::vector<std::function<void()>> calls;
    {
      std::unique_lock<std::mutex> lock(mutex);
      work_ready.wait(lock, [&] { return stopping || !queue.empty(); });
      if (stopping) break;
      expire(calls);
      if (!queue.empty()) {
        batch.push_back(queue.front());
        queue.pop_front();
        int64_t images = batch.front()->request.n;
        for (auto it = queue.begin(); it != queue.end();) {
          if ((*it)->batch_key == batch.front()->batch_key && images + (*it)->request.n <= options.max_batch) {
            images += (*it)->request.n;
            batch.push_back(*it);
            it = queue.erase(it);
          } else {
            ++it;
          }
        }
        for (const JobPtr& job : batch) job->status.state = JobState::kRunning;
        running = batch;
      }
    }
    for (auto& call : calls) call();
    if (!batch.empty()) run_batch(batch);
    {
      std::lock_guard<std::mutex> lock(mutex);
      running.clear();
    }
    idle.notify_all();
  }
}

void ImageService::State::run_batch(const std::vector<JobPtr>& batch) {
  std::vector<std::vector<GeneratedImage>> generated;
  int64_t block_forwards_per_run = 0;
  try {
    generated = sample_batch(batch, block_forwards_per_run);
  } catch (const BatchAbandoned&) {
    return;  // every request of the batch was cancelled or timed out (each already answered)
  } catch (const std::exception& e) {
    std::vector<JobPtr> live;
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (const JobPtr& job : batch)
        if (!job->finished) live.push_back(job);
    }
    if (live.size() > 1) {  // find the request at fault: each alone
      spdlog::warn("a batch of {} requests failed ({}); running them one by one", live.size(), short_torch_error(e));
      for (const JobPtr& job : live) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          running = {job};
        }
        run_batch({job});
      }
      return;
    }
    std::function<void()> call;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!live.empty()) call = finish(*live.front(), JobState::kFailed, 500, "sampling failed: " + short_torch_error(e, 400));
    }
    if (call) call();
    return;
  }
  int64_t run_images = 0;
  for (const JobPtr& job : batch) run_images += job->request.n;
  std::vector<std::function<void()>> calls;
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++batches;
    for (size_t i = 0; i < batch.size(); ++i) {
      Job& job = *batch[i];
      batch_images += job.request.n;
      if (job.finished) continue;  // cancelled or timed out meanwhile: its images are dropped
      job.status.images = std::move(generated[i]);
      job.status.block_forwards = block_forwards_per_run;
      job.status.batch_images = run_images;
      job.status.step = job.status.steps;
      images += job.request.n;
      block_forwards += job.request.n * block_forwards_per_run;
      if (auto call = finish(job, JobState::kDone)) calls.push_back(std::move(call));
    }
  }
  for (auto& call : calls) call();
}

std::vector<std::vector<GeneratedImage>> ImageService::State::sample_batch(const std::vector<JobPtr>& batch,
                                                                           int64_t& block_forwards_per_run) {
  const RunConfig& config = *batch.front()->config;
  SamplingSetup& setup = setup_for(config, batch.front()->batch_key);
  // Each step: progress for the batch's jobs, deadlines, and whether any request still wants the images.
  const ProgressCallback progress = [&](int64_t k, int64_t n) {
    std::vector<std::function<void()>> calls;
    bool any_live = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      expire(calls);
      for (const JobPtr& job : batch) {
        job->status.step = k;
        job->status.steps = n;
        any_live = any_live || !job->finished;
      }
      if (stopping) any_live = false;
    }
    for (auto& call : calls) call();
    if (!any_live) throw BatchAbandoned{};
  };

  std::vector<std::vector<GeneratedImage>> out(batch.size());
  nlohmann::json settings;
  torch::Tensor images;  // (B, C, H, W) in [-1, 1]
  if (!text_to_image) {
    ClassToImageModel& model = *class_model;
    const LentSetup lent(model.sampling, setup);
    model.options = config.sampling.options;
    std::vector<int64_t> labels;
    std::vector<torch::Tensor> noise;
    for (const JobPtr& job : batch) {
      labels.insert(labels.end(), job->labels.begin(), job->labels.end());
      noise.push_back(initial_noise(model, job->request.n, job->request.seed));
    }
    const ClassToImageResult result = generate(model, labels, torch::cat(noise), progress);
    images = result.images;
    block_forwards_per_run = result.sampling.block_forwards;
    settings = generation_settings(config, *model.sampling.method, *model.sampling.solver);
  } else {
    TextToImageModel& model = *text_model;
    const LentSetup lent(model.sampling, setup);
    model.options = config.sampling.options;
    TextToImageRequest request;
    request.negative_prompt = batch.front()->request.negative_prompt;
    request.height = batch.front()->size.height;
    request.width = batch.front()->size.width;
    for (const JobPtr& job : batch)
      for (int64_t i = 0; i < job->request.n; ++i) {
        request.prompts.push_back(job->request.prompt);
        request.seeds.push_back(job->request.seed + static_cast<uint64_t>(i));
      }
    const TextToImageResult result = generate(model, request, progress);
    images = result.images;
    block_forwards_per_run = result.sampling.block_forwards;
    settings =
        text_to_image_png_settings(LoadedRunConfig{config, base.folder}, model, request.negative_prompt, options.config_label);
    settings["width"] = result.requested.width;
    settings["height"] = result.requested.height;
    settings["sampled_size"] = {result.generated.width, result.generated.height};
  }
  require_finite(images, "the generated images");
  settings["block_forwards"] = block_forwards_per_run;
  if (!text_to_image && !options.config_label.empty()) settings["config"] = options.config_label;

  // One PNG per image, its metadata as ilf_sample writes it for that image alone.
  int64_t offset = 0;
  for (size_t j = 0; j < batch.size(); ++j) {
    const Job& job = *batch[j];
    for (int64_t i = 0; i < job.request.n; ++i) {
      nlohmann::json image_settings = settings;
      GeneratedImage image;
      if (text_to_image) {
        image.seed = job.request.seed + static_cast<uint64_t>(i);
        image_settings["prompt"] = job.request.prompt;
      } else {
        image.seed = job.request.seed;  // the request's n noises come from one generator
        image_settings["classes"] = job.labels;
      }
      image_settings["seed"] = image.seed;
      if (job.request.n > 1) image_settings["index"] = i;
      image.png = encode_png(images[offset + i], {{"Software", "ilf_serve"}, {"ilf", image_settings.dump()}});
      out[j].push_back(std::move(image));
    }
    offset += job.request.n;
  }
  return out;
}

}  // namespace ilf::serve
