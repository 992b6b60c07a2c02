// The image service behind ilf_serve, without HTTP: what a request may say (each refusal names its
// field), and what the service promises on the embedded Fashion-MNIST model: an image is the same byte
// for byte whether its request ran alone or batched, the same pixels and settings as ilf_sample's library
// call, the queue bound, cancellation, deadlines, draining, and a request failing inside sampling failing
// alone. The HTTP routes, the tools and the faults are tested by tests/serve/serve_test.py.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "ilf/io/image.h"
#include "ilf/pipelines/sample_files.h"
#include "ilf/serve/image_service.h"

namespace ilf::serve {
namespace {

const std::string kConfig = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";

ServiceOptions cpu_options() {
  ServiceOptions o;
  o.device = "cpu";
  return o;
}

ImageRequest parse(const std::string& body) { return parse_image_request(body, cpu_options()); }

// The RequestError a body gets from the parser (status 0 when it is accepted).
RequestError refusal(const std::string& body) {
  try {
    parse(body);
  } catch (const RequestError& e) {
    return e;
  }
  return RequestError(0, "accepted");
}

TEST(ServeRequest, EachRefusalNamesTheFieldInMessageAndParam) {
  struct Case {
    const char* body;
    const char* param;
    const char* says;
  };
  const Case cases[] = {
      {R"({"prompt": "3", "colour": 1})", "colour", "unknown field \"colour\""},
      {R"({"n": 1})", "prompt", "\"prompt\" is required"},
      {R"({"prompt": 3})", "prompt", "must be a string (got an integer)"},
      {R"({"prompt": ""})", "prompt", "must not be empty"},
      {R"({"prompt": "3", "n": 0})", "n", "from 1 to 10"},
      {R"({"prompt": "3", "n": 11})", "n", "from 1 to 10"},
      {R"({"prompt": "3", "n": 2.5})", "n", "must be an integer"},
      {R"({"prompt": "3", "size": "32"})", "size", "WIDTHxHEIGHT"},
      {R"({"prompt": "3", "size": "0x32"})", "size", "WIDTHxHEIGHT"},
      {R"({"prompt": "3", "size": "99999x32"})", "size", "WIDTHxHEIGHT"},
      {R"({"prompt": "3", "response_format": "url"})", "response_format", "not supported"},
      {R"({"prompt": "3", "seed": -1})", "seed", "\"seed\" must be an integer"},
      {R"({"prompt": "3", "steps": 0})", "steps", "\"steps\" must be an integer from 1 to 200"},
      {R"({"prompt": "3", "steps": 201})", "steps", "from 1 to 200"},
      {R"({"prompt": "3", "guidance_scale": 1e9})", "guidance_scale", "from 0 to 1000"},
      {R"({"prompt": "3", "method": 1})", "method", "must be a string"},
      {R"({"prompt": "3", "settings": [1]})", "settings", "must be an object"},
      {R"({"prompt": "3", "settings": {"model.depth": 2}})", "settings.model.depth", "may set keys of sampling, ilf"},
      {R"({"prompt": "3", "settings": {"weights": "x"}})", "settings.weights", "not a dotted config key"},
  };
  for (const Case& c : cases) {
    const RequestError e = refusal(c.body);
    EXPECT_EQ(e.status(), 400) << c.body;
    EXPECT_EQ(e.param(), c.param) << c.body;
    EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << c.body << " -> " << e.what();
  }
  const RequestError malformed = refusal(R"({"prompt": "3",)");
  EXPECT_EQ(malformed.status(), 400);
  EXPECT_NE(std::string(malformed.what()).find("not valid JSON"), std::string::npos) << malformed.what();
  EXPECT_NE(std::string(malformed.what()).find("line 1"), std::string::npos) << malformed.what();
}

TEST(ServeRequest, TheErrorObjectHasOpenAIsShape) {
  const Json j = Json::parse(RequestError(400, "bad n", "n").to_json());
  EXPECT_EQ(j["error"]["message"], "bad n");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "n");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_TRUE(Json::parse(RequestError(503, "x").to_json())["error"]["param"].is_null());
  // A body with invalid UTF-8: the parser's message quotes the bytes; the error object is still JSON.
  const RequestError bytes = refusal("{\"prompt\": \"\xff\xfe\"}");
  EXPECT_EQ(bytes.status(), 400);
  EXPECT_NO_THROW(Json::parse(bytes.to_json()));
}

TEST(ServeRequest, NamedFieldsAndSettingsBecomeConfigKeys) {
  const ImageRequest r = parse(
      R"({"prompt": "sneaker", "n": 2, "size": "32x48", "seed": 7, "steps": 12, "method": "baseline",
          "guidance_scale": 1.5, "settings": {"ilf.strength": 0.5, "sampling.steps": 3}, "user": "u", "model": "m"})");
  EXPECT_EQ(r.prompt, "sneaker");
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.width, 32);
  EXPECT_EQ(r.height, 48);
  EXPECT_EQ(r.seed, 7u);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.overrides["sampling.steps"], 12);  // the named field wins over the same key in settings
  EXPECT_EQ(r.overrides["sampling.method"], "baseline");
  EXPECT_EQ(r.overrides["sampling.guidance_scale"], 1.5);
  EXPECT_EQ(r.overrides["ilf.strength"], 0.5);
}

// ---- the service on the embedded model ----

LoadedRunConfig embedded() { return load_service_config(read_run_config_json(kConfig, {}), kConfig); }

JobStatus wait_for(ImageService& service, const std::string& id) {
  for (int i = 0; i < 6000; ++i) {
    const auto s = service.status(id);
    if (!s) throw Error("job " + id + " vanished");
    if (s->state != JobState::kQueued && s->state != JobState::kRunning) return *s;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw Error("job " + id + " did not finish within 60 s");
}

ImageRequest request(const std::string& prompt, uint64_t seed, int64_t n = 1, int64_t steps = 0) {
  ImageRequest r;
  r.prompt = prompt;
  r.seed = seed;
  r.n = n;
  if (steps) r.overrides["sampling.steps"] = steps;
  return r;
}

TEST(ImageService, ARequestGivesTheSameImagesAloneAndBatchedWithOthers) {
  ServiceOptions options = cpu_options();
  options.max_batch = 8;
  ImageService service(embedded(), options);
  // A slow request first, so that the next three wait in the queue together and run as one batch.
  const std::string slow = service.submit(request("0", 99, 1, 200));
  const std::vector<ImageRequest> batched = {request("sneaker", 1, 2), request("3", 2), request("Bag", 3, 1)};
  std::vector<std::string> ids;
  for (const auto& r : batched) ids.push_back(service.submit(r));
  ASSERT_EQ(wait_for(service, slow).state, JobState::kDone);
  std::vector<JobStatus> together;
  for (const auto& id : ids) together.push_back(wait_for(service, id));
  for (const auto& s : together) {
    ASSERT_EQ(s.state, JobState::kDone) << s.error;
    EXPECT_EQ(s.batch_images, 4) << "the three requests were meant to share one sampling run";
  }
  ImageService alone_service(embedded(), [] {
    ServiceOptions o = cpu_options();
    o.max_batch = 1;
    return o;
  }());
  for (size_t i = 0; i < batched.size(); ++i) {
    const JobStatus alone = wait_for(alone_service, alone_service.submit(batched[i]));
    ASSERT_EQ(alone.state, JobState::kDone) << alone.error;
    EXPECT_EQ(alone.batch_images, batched[i].n);
    ASSERT_EQ(alone.images.size(), together[i].images.size());
    for (size_t k = 0; k < alone.images.size(); ++k)
      EXPECT_EQ(alone.images[k].png, together[i].images[k].png) << "request " << i << " image " << k;
  }
}

TEST(ImageService, AnImageHasIlfSamplesPixelsAndSettings) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("ilf_serve_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  SampleFilesRequest sample;
  sample.classes = {7};
  sample.batch = 1;
  sample.seed = 5;
  sample.device = "cpu";
  sample.enlarge = false;
  sample.config_label = "configs/fashion_mnist.json";
  sample.out = (dir / "sample.png").string();
  write_sample_files(load_sample_config(read_run_config_json(kConfig, {}), kConfig, sample), sample);

  ServiceOptions options = cpu_options();
  options.config_label = "configs/fashion_mnist.json";
  ImageService service(embedded(), options);
  const JobStatus s = wait_for(service, service.submit(request("Sneaker", 5)));
  ASSERT_EQ(s.state, JobState::kDone) << s.error;
  ASSERT_EQ(s.images.size(), 1u);
  const std::string served = (dir / "served.png").string();
  {
    std::ofstream out(served, std::ios::binary);
    out.write(s.images[0].png.data(), static_cast<std::streamsize>(s.images[0].png.size()));
  }
  EXPECT_TRUE(torch::equal(read_png(served), read_png(sample.out)));
  std::map<std::string, std::string> a = read_png_text(served), b = read_png_text(sample.out);
  EXPECT_EQ(Json::parse(a.at("ilf")), Json::parse(b.at("ilf")));
  EXPECT_EQ(a.at("Software"), "ilf_serve");
  std::filesystem::remove_all(dir);
}

TEST(ImageService, RequestsTheServiceCannotTakeAreRefusedBeforeQueueing) {
  ImageService service(embedded(), cpu_options());
  const auto status_of = [&](const ImageRequest& r) {
    try {
      service.submit(r);
    } catch (const RequestError& e) {
      return std::make_pair(e.status(), e.param());
    }
    return std::make_pair(0, std::string());
  };
  EXPECT_EQ(status_of(request("shoe", 0)), std::make_pair(400, std::string("prompt")));
  EXPECT_EQ(status_of(request("10", 0)), std::make_pair(400, std::string("prompt")));
  ImageRequest files = request("3", 0);
  files.overrides["ilf.feedback_weights"] = "/etc/passwd";
  EXPECT_EQ(status_of(files), std::make_pair(400, std::string("settings.ilf.feedback_weights")));
  ImageRequest unknown = request("3", 0);
  unknown.overrides["ilf.colour"] = 1;
  EXPECT_EQ(status_of(unknown).first, 400);
  ImageRequest method = request("3", 0);
  method.overrides["sampling.method"] = "magic";
  EXPECT_EQ(status_of(method), std::make_pair(400, std::string("method")));
  ImageRequest size = request("3", 0);
  size.width = size.height = 64;
  EXPECT_EQ(status_of(size), std::make_pair(400, std::string("size")));
  ImageRequest model = request("3", 0);
  model.model = "dall-e-3";
  EXPECT_EQ(status_of(model), std::make_pair(404, std::string("model")));
}

TEST(ImageService, AFullQueueRefusesWith429AndCancelledOrTimedOutJobsSayWhy) {
  ServiceOptions options = cpu_options();
  options.max_queue = 1;
  options.max_batch = 1;
  ImageService service(embedded(), options);
  const std::string running = service.submit(request("0", 0, 1, 200));
  while (service.status(running)->state == JobState::kQueued) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const std::string queued = service.submit(request("1", 0, 1, 200));
  try {
    service.submit(request("2", 0));
    FAIL() << "a third request fitted a queue of one";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 429);
  }
  EXPECT_TRUE(service.cancel(queued));
  EXPECT_EQ(service.status(queued)->state, JobState::kCancelled);
  EXPECT_TRUE(service.cancel(running));  // stops before its next step
  EXPECT_EQ(wait_for(service, running).state, JobState::kCancelled);
  EXPECT_FALSE(service.cancel("job-unknown"));

  ServiceOptions quick = cpu_options();
  quick.request_timeout_s = 0.05;
  ImageService impatient(embedded(), quick);
  const JobStatus late = wait_for(impatient, impatient.submit(request("3", 0, 1, 200)));
  EXPECT_EQ(late.state, JobState::kFailed);
  EXPECT_EQ(late.error_status, 504);
  EXPECT_NE(late.error.find("timeout"), std::string::npos) << late.error;
}

TEST(ImageService, DrainFinishesAcceptedJobsThenRefusesNewOnesWith503) {
  ImageService service(embedded(), cpu_options());
  std::promise<JobStatus> done;
  service.submit(request("4", 0, 1, 50), [&](const JobStatus& s) { done.set_value(s); });
  service.drain();
  auto finished = done.get_future();
  ASSERT_EQ(finished.wait_for(std::chrono::seconds(0)), std::future_status::ready) << "drain returned before the job ended";
  EXPECT_EQ(finished.get().state, JobState::kDone);
  try {
    service.submit(request("4", 0));
    FAIL() << "a draining service took a request";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 503);
  }
}

TEST(ImageService, MetricsCountRequestsImagesAndBatches) {
  ImageService service(embedded(), cpu_options());
  wait_for(service, service.submit(request("4", 0, 2)));
  service.record_http("/v1/images/generations", 200, 0.3);
  const std::string text = service.metrics_text();
  EXPECT_NE(text.find("ilf_http_requests_total{endpoint=\"/v1/images/generations\",status=\"200\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("ilf_request_duration_seconds_bucket{endpoint=\"/v1/images/generations\",le=\"0.5\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("ilf_images_total 2"), std::string::npos);
  EXPECT_NE(text.find("ilf_batches_total 1"), std::string::npos);
  EXPECT_NE(text.find("ilf_jobs_total{state=\"done\"} 1"), std::string::npos);
  EXPECT_NE(text.find("ilf_block_forwards_total 284"), std::string::npos) << "2 images x 142 block forwards";
}

}  // namespace
}  // namespace ilf::serve
