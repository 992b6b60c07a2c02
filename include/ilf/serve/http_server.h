// The HTTP front of `ilf_serve`, on Boost.Beast (asynchronous: a slow client costs a socket and a
// buffer, not a thread, and every request must arrive whole within `read_timeout_s`). Routes:
//   POST /v1/images/generations   OpenAI images API (waits for the images)
//   POST /v1/jobs                 the same body -> {"id", "status": "queued", ...} (202)
//   GET  /v1/jobs/{id}            queued / running (step k of n) / done (the images) / failed / cancelled
//   DELETE /v1/jobs/{id}          cancel
//   GET  /v1/models, GET /health, GET /metrics (Prometheus text)
// Errors are OpenAI's error object (serve/image_service.h RequestError). With an API key every route
// but /health needs "Authorization: Bearer KEY" (compared in constant time; 401 says only that the key
// is missing or wrong). SIGTERM / SIGINT: new requests get 503, accepted ones finish, then run_server
// returns.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "ilf/serve/image_service.h"

namespace ilf::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback unless asked otherwise
  int port = 8080;                 // 0 = any free port (the port chosen is logged and given to `on_listening`)
  std::string api_key;             // "" = no authentication
  int64_t max_body_bytes = 1 << 20;
  double read_timeout_s = 30;      // the whole request (headers and body) must arrive within this
  int64_t max_connections = 1024;  // open connections; more are closed at once
  int io_threads = 1;

  void validate() const;  // throws ilf::Error naming the option
};

// Reads the key of --api-key-file: the file's text without surrounding white space; errors name the file
// (missing, not a regular file, empty).
std::string read_api_key_file(const std::string& path);

// Constant-time comparison (time depends only on the lengths, not on where the texts differ).
bool constant_time_equal(const std::string& a, const std::string& b);

// Serves until SIGTERM or SIGINT, then drains `service` and returns 0. `on_listening(port)` is called once
// the socket listens. Throws ilf::Error when the address cannot be bound (naming host and port).
int run_server(ImageService& service, const ServerOptions& options, const std::function<void(int port)>& on_listening = nullptr);

}  // namespace ilf::serve
