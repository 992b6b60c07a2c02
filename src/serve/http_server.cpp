// The HTTP front of `ilf_serve` (serve/http_server.h) on Boost.Beast: an acceptor, one session per
// connection, and the routes that turn requests into calls of the ImageService. It is asynchronous so
// that what a client can hold is bounded by the options, not by threads: a connection costs a socket and
// a buffer, a request must arrive whole within `read_timeout_s` (one deadline for headers and body, so a
// client sending a byte a second is cut off), a body over `max_body_bytes` is refused from its
// Content-Length before it is read, and a generation request waiting for its images holds no thread
// (the service's worker posts the finished job back onto the connection's strand). Shutdown on SIGTERM /
// SIGINT drains: new requests get 503, the service finishes what it accepted, the responses are written,
// then run_server returns. Everything a request may ask is checked by the service (parse_image_request,
// submit); this file only maps HTTP onto it and its errors onto OpenAI's error object.
#include "ilf/serve/http_server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ilf/util/checks.h"
#include "http_messages.h"

namespace ilf::serve {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

// Beast 1.74 hands out boost::string_view, which does not convert to std::string_view.
std::string_view as_view(beast::string_view text) { return {text.data(), text.size()}; }

// Request headers beyond this are refused (431): Beast's default is 8 KiB, and a long bearer key with
// a browser's headers can come near it.
constexpr uint32_t kHeaderLimitBytes = 16 * 1024;
// After refusing a request whose body was not read (413, 431, 400), the connection reads and discards
// what the client is still sending for at most this long / this much before closing: closing with
// unread data makes the kernel send a reset, which can make the client lose the error response it has
// not read yet. The bounds keep a 100 MB upload from being read to the end.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 1 << 20;
// An accept that fails (EMFILE: out of file descriptors) is retried after this pause, not at once in a
// busy loop.
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);

// A response is far larger than a request (megabytes of base64 PNGs), so its write gets at least a
// minute; a client that reads slower than that is cut off like a slow sender.
std::chrono::milliseconds write_timeout(const ServerOptions& options) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(options.read_timeout_s, 60.0) * 1000));
}

bool valid_job_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

enum class Route { kGenerations, kJobs, kJob, kModels, kHealth, kMetrics, kUnknown };

// A request's route: `label` is the route pattern for the metrics (never the raw path, so that job ids
// and scanners' paths do not make a label each), `allow` the methods it takes (for 405's Allow).
struct RouteMatch {
  Route route = Route::kUnknown;
  std::string label = "other";
  const char* allow = "";
  std::string job_id;  // kJob
};

RouteMatch match_route(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  constexpr std::string_view kJobPrefix = "/v1/jobs/";
  if (path == "/v1/images/generations") return {Route::kGenerations, "/v1/images/generations", "POST", ""};
  if (path == "/v1/jobs") return {Route::kJobs, "/v1/jobs", "POST", ""};
  if (path.size() > kJobPrefix.size() && path.substr(0, kJobPrefix.size()) == kJobPrefix &&
      path.find('/', kJobPrefix.size()) == std::string_view::npos)
    return {Route::kJob, "/v1/jobs/{id}", "GET, DELETE", std::string(path.substr(kJobPrefix.size()))};
  if (path == "/v1/models") return {Route::kModels, "/v1/models", "GET", ""};
  if (path == "/health") return {Route::kHealth, "/health", "GET", ""};
  if (path == "/metrics") return {Route::kMetrics, "/metrics", "GET", ""};
  return {};
}

bool method_allowed(Route route, http::verb method) {
  switch (route) {
    case Route::kGenerations:
    case Route::kJobs: return method == http::verb::post;
    case Route::kJob: return method == http::verb::get || method == http::verb::delete_;
    default: return method == http::verb::get;
  }
}

// What a route answers before it becomes an HTTP response.
struct Reply {
  Reply(int status, std::string body, std::string content_type = "application/json")
      : status(status), body(std::move(body)), content_type(std::move(content_type)) {}
  int status;  // 0: none yet (a generation answers when its images are made)
  std::string body;
  std::string content_type;
  std::vector<std::pair<http::field, std::string>> headers;
  bool close = false;   // close the connection after this response
  bool linger = false;  // ... and the request's body was not read (see kLingerTime)
};

Reply error_reply(int status, const std::string& message) { return {status, error_body(status, message)}; }

// The bridge from the service's worker thread into the io_context: a finished job is posted to its
// session only while the server runs. run_server closes it before the io_context goes, so a callback the
// service calls (or keeps) later touches nothing that is gone.
struct CallbackBridge {
  std::mutex mutex;
  bool open = true;
};

class HttpSession;

// What every session shares; it outlives the io_context (sessions still queued in it are destroyed with it).
struct ServerState {
  ServerState(ImageService& service, const ServerOptions& options) : service(service), options(options) {}
  ImageService& service;
  const ServerOptions& options;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> connections{0};
  // Requests read and not yet answered (the response written or its write failed): shutdown waits for them.
  std::atomic<int64_t> unanswered{0};
  std::function<void()> on_answered_while_stopping;  // set by the listener (on its strand)
  std::shared_ptr<CallbackBridge> bridge = std::make_shared<CallbackBridge>();
  // Sessions waiting for a generation: kept alive here (the service's callback holds only a weak pointer),
  // released when their job finishes or at the end of run_server.
  std::mutex waiting_mutex;
  std::unordered_map<const HttpSession*, std::shared_ptr<HttpSession>> waiting;
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, ServerState& state) : state_(state), stream_(std::move(socket)) {}
  ~HttpSession() {
    if (answering_) --state_.unanswered;  // a failure path that never wrote (not expected)
    --state_.connections;
  }

  void start() {
    asio::dispatch(stream_.get_executor(), beast::bind_front_handler(&HttpSession::read_request, shared_from_this()));
  }

  // On the session's strand, posted by the service's callback.
  void on_job_finished(const JobStatus& job) {
    if (!waiting_) return;
    waiting_ = false;
    beast::error_code ignored;
    stream_.socket().cancel(ignored);  // the disconnect watch
    {
      std::lock_guard<std::mutex> lock(state_.waiting_mutex);
      state_.waiting.erase(this);
    }
    if (job.state == JobState::kDone) return send({200, images_body(job)});
    const int status = job_error_status(job);
    send({status, RequestError(status, job_error_message(job), "", error_type_for(status)).to_json()});
  }

 private:
  void read_request() {
    parser_.emplace();
    parser_->body_limit(static_cast<uint64_t>(state_.options.max_body_bytes));
    parser_->header_limit(kHeaderLimitBytes);
    // One deadline for the whole request, headers and body (and the 100 Continue between them): the
    // stream's expiry is a point in time, not a per-read timeout.
    stream_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(state_.options.read_timeout_s * 1000)));
    http::async_read_header(stream_, buffer_, *parser_, beast::bind_front_handler(&HttpSession::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    started_ = SteadyClock::now();
    const auto& request = parser_->get();
    // curl and others send "Expect: 100-continue" with larger bodies and wait (curl: a second) for it.
    if (!parser_->is_done() && iequals_ascii(as_view(request[http::field::expect]), "100-continue")) {
      continue_.emplace(http::status::continue_, request.version());
      return http::async_write(stream_, *continue_,
                               beast::bind_front_handler(&HttpSession::on_continue_sent, shared_from_this()));
    }
    read_body();
  }

  void on_continue_sent(beast::error_code ec, size_t) {
    if (ec) return close();
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return handle_request();
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    handle_request();
  }

  void on_read_error(beast::error_code ec) {
    if (started_ == SteadyClock::time_point()) started_ = SteadyClock::now();
    label_ = match_route(as_view(parser_->get().target())).label;
    if (ec == http::error::body_limit) {
      Reply reply = error_reply(413, "the request body is larger than the server's limit of " +
                                         std::to_string(state_.options.max_body_bytes) + " bytes");
      reply.close = reply.linger = true;
      return send(std::move(reply));
    }
    if (ec == http::error::header_limit) {
      Reply reply = error_reply(431, "the request headers are larger than " + std::to_string(kHeaderLimitBytes) + " bytes");
      reply.close = reply.linger = true;
      return send(std::move(reply));
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category() && ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
      Reply reply = error_reply(400, "malformed HTTP request: " + ec.message());
      reply.close = reply.linger = true;
      return send(std::move(reply));
    }
    // The client closed the connection, reset it, or did not send a whole request within read_timeout_s
    // (the stream has closed the socket then): nothing to answer.
    if (ec == beast::error::timeout)
      spdlog::debug("ilf_serve: closed a connection that sent no whole request within {} s", state_.options.read_timeout_s);
    close();
  }

  void handle_request() {
    const auto& request = parser_->get();
    const RouteMatch match = match_route(as_view(request.target()));
    label_ = match.label;
    keep_alive_ = request.keep_alive();
    try {
      Reply reply = route(request, match);
      if (reply.status != 0) send(std::move(reply));  // 0: answered later (a generation waits for its images)
    } catch (const RequestError& e) {
      send({e.status(), e.to_json()});
    } catch (const std::exception& e) {
      spdlog::error("ilf_serve: {} {}: {}", std::string(as_view(request.method_string())), label_, e.what());
      send(error_reply(500, std::string("internal error: ") + e.what()));
    }
  }

  Reply route(const http::request<http::string_body>& request, const RouteMatch& match) {
    const std::string& api_key = state_.options.api_key;
    if (state_.stopping) {
      Reply reply = match.route == Route::kHealth ? Reply{503, R"({"status":"draining"})"}
                                                  : error_reply(503, "the server is shutting down");
      reply.close = true;
      return reply;
    }
    if (match.route != Route::kHealth && !api_key.empty() && !authorized(as_view(request[http::field::authorization]), api_key)) {
      Reply reply = error_reply(401, "missing or invalid API key");
      reply.headers.emplace_back(http::field::www_authenticate, "Bearer");
      return reply;
    }
    if (match.route == Route::kUnknown)
      return error_reply(404, "no such route: " + abbreviated_target(as_view(request.target())));
    if (!method_allowed(match.route, request.method())) {
      Reply reply = error_reply(405, "method " + std::string(as_view(request.method_string())) + " is not allowed on " +
                                         match.label + " (allowed: " + match.allow + ")");
      reply.headers.emplace_back(http::field::allow, match.allow);
      return reply;
    }
    ImageService& service = state_.service;
    switch (match.route) {
      case Route::kGenerations: return generate(request.body());
      case Route::kJobs: {
        const std::string id = service.submit(parse_image_request(request.body(), service.options()));
        const std::optional<JobStatus> job = service.status(id);
        const Json body = {{"id", id},
                           {"object", "image.job"},
                           {"status", job ? to_string(job->state) : "queued"},
                           {"created", job ? job->created : static_cast<int64_t>(std::time(nullptr))}};
        return {202, json_text(body)};
      }
      case Route::kJob: {
        const std::string& id = match.job_id;
        if (!valid_job_id(id)) return error_reply(404, "no such job: " + abbreviated_target(id));
        if (request.method() == http::verb::delete_ && !service.cancel(id)) return error_reply(404, "no such job: " + id);
        const std::optional<JobStatus> job = service.status(id);
        if (!job) return error_reply(404, "no such job: " + id);
        return {200, job_body(*job, request.method() == http::verb::get)};
      }
      case Route::kModels: return {200, json_text(service.models())};
      case Route::kHealth: return service.draining() ? Reply{503, R"({"status":"draining"})"} : Reply{200, R"({"status":"ok"})"};
      case Route::kMetrics: return {200, service.metrics_text(), "text/plain; version=0.0.4"};
      case Route::kUnknown: break;
    }
    return error_reply(404, "no such route");
  }

  static std::string abbreviated_target(std::string_view target) { return abbreviated(std::string(target), 200); }

  // POST /v1/images/generations: queues the request; the response is written when the service calls back.
  Reply generate(const std::string& body) {
    ImageService& service = state_.service;
    const ImageRequest request = parse_image_request(body, service.options());
    std::weak_ptr<HttpSession> weak = shared_from_this();
    std::shared_ptr<CallbackBridge> bridge = state_.bridge;
    job_id_ = service.submit(request, [weak, bridge](const JobStatus& job) {
      std::lock_guard<std::mutex> lock(bridge->mutex);
      if (!bridge->open) return;
      if (std::shared_ptr<HttpSession> session = weak.lock()) {
        auto executor = session->stream_.get_executor();
        // The worker keeps no reference: the session may only end on its own strand.
        asio::post(executor, [session = std::move(session), job]() { session->on_job_finished(job); });
      }
    });
    waiting_ = true;
    answering_ = true;
    ++state_.unanswered;
    {
      std::lock_guard<std::mutex> lock(state_.waiting_mutex);
      state_.waiting.emplace(this, shared_from_this());
    }
    stream_.expires_never();  // the service's request_timeout_s bounds the wait
    watch_disconnect();
    return {0, ""};
  }

  // While a generation waits, a readable socket means the client closed it (or sent a pipelined request):
  // a peek tells which, and a client that left gets its job cancelled.
  void watch_disconnect() {
    stream_.socket().async_wait(
        tcp::socket::wait_read,
        asio::bind_executor(stream_.get_executor(), beast::bind_front_handler(&HttpSession::on_readable, shared_from_this())));
  }

  void on_readable(beast::error_code ec) {
    if (ec || !waiting_) return;  // cancelled: the images came
    char byte = 0;
    beast::error_code peek_ec;
    tcp::socket& socket = stream_.socket();
    socket.non_blocking(true, peek_ec);
    const size_t n = socket.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, peek_ec);
    if (peek_ec == asio::error::would_block || peek_ec == asio::error::try_again) return watch_disconnect();
    if (!peek_ec && n > 0) return;  // a pipelined request: the client is there; it is read after this response
    spdlog::info("ilf_serve: the client of job {} closed its connection; cancelling the job", job_id_);
    state_.service.cancel(job_id_);  // the job's callback still comes, and its write fails
  }

  void send(Reply reply) {
    // A full queue: the client may come back in a second (a batch of the embedded model takes about that);
    // OpenAI's clients and our load client honour Retry-After.
    if (reply.status == 429) reply.headers.emplace_back(http::field::retry_after, "1");
    if (!answering_) {
      answering_ = true;
      ++state_.unanswered;
    }
    status_ = reply.status;
    linger_ = reply.linger;
    const unsigned version = parser_ && parser_->get().version() ? parser_->get().version() : 11;
    response_.emplace(static_cast<http::status>(reply.status), version);
    response_->set(http::field::server, "ilf_serve");
    response_->set(http::field::content_type, reply.content_type);
    for (const auto& [field, value] : reply.headers) response_->set(field, value);
    response_->keep_alive(keep_alive_ && !reply.close && !state_.stopping);
    response_->body() = std::move(reply.body);
    response_->prepare_payload();
    stream_.expires_after(write_timeout(state_.options));
    http::async_write(stream_, *response_, beast::bind_front_handler(&HttpSession::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, size_t) {
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - started_).count();
    const bool keep_alive = response_->keep_alive();
    response_.reset();
    state_.service.record_http(label_, status_, seconds);
    answered();
    if (ec) {
      spdlog::debug("ilf_serve: writing a {} response failed: {}", status_, ec.message());
      return close();
    }
    if (linger_) return linger_then_close();
    if (!keep_alive) return close();
    keep_alive_ = false;
    started_ = SteadyClock::time_point();
    read_request();
  }

  void answered() {
    answering_ = false;
    if (--state_.unanswered == 0 && state_.stopping && state_.on_answered_while_stopping) state_.on_answered_while_stopping();
  }

  // The request's body was not read (413 and the like): stop sending, discard what still comes for a
  // moment (see kLingerTime), then close.
  void linger_then_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    discard_ = std::make_unique<std::array<char, 16384>>();
    stream_.expires_after(kLingerTime);
    discard_more();
  }

  void discard_more() {
    stream_.async_read_some(asio::buffer(*discard_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->discarded_ += n;
      if (ec || self->discarded_ >= kLingerBytes) return self->close();
      self->discard_more();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  ServerState& state_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  std::optional<http::response<http::string_body>> response_;
  std::unique_ptr<std::array<char, 16384>> discard_;
  size_t discarded_ = 0;
  std::string label_ = "other";
  SteadyClock::time_point started_;
  int status_ = 0;
  bool keep_alive_ = false, linger_ = false;
  bool answering_ = false;  // counted in state_.unanswered
  bool waiting_ = false;    // for the images of job_id_
  std::string job_id_;
};

// The acceptor, the signals and the shutdown, on one strand.
class Listener {
 public:
  Listener(asio::io_context& io, ServerState& state)
      : io_(io),
        state_(state),
        strand_(asio::make_strand(io)),
        acceptor_(strand_),
        signals_(strand_, SIGTERM, SIGINT),
        accept_retry_(strand_),
        grace_(strand_) {}

  // Binds host:port (reuse_address: a restart binds again while the old socket is in TIME_WAIT) and listens.
  int listen() {
    const ServerOptions& options = state_.options;
    const std::string where = options.host + ":" + std::to_string(options.port);
    beast::error_code ec;
    tcp::endpoint endpoint;
    const asio::ip::address address = asio::ip::make_address(options.host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, static_cast<unsigned short>(options.port));
    } else {  // a host name ("localhost")
      tcp::resolver resolver(io_);
      const auto results = resolver.resolve(options.host, std::to_string(options.port), ec);
      if (ec || results.empty()) throw Error("cannot listen on " + where + ": cannot resolve the host (" + ec.message() + ")");
      endpoint = results.begin()->endpoint();
    }
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw Error("cannot listen on " + where + ": " + ec.message());
    if (!endpoint.address().is_loopback()) {
      if (options.api_key.empty())
        spdlog::warn(
            "ilf_serve: listening on {}, reachable from other machines, without authentication: "
            "anyone who can reach it can run the model (give an API key: ilf_serve --api-key-file)",
            endpoint.address().to_string());
      else
        spdlog::warn("ilf_serve: listening on {}, reachable from other machines (requests need the API key)",
                     endpoint.address().to_string());
    }
    return acceptor_.local_endpoint().port();
  }

  void start() {
    state_.on_answered_while_stopping = [this]() { asio::post(strand_, [this]() { stop_when_done(); }); };
    wait_for_signal();
    accept();
  }

  // After io_context::run: the drain thread has ended (or is joined here).
  void join() {
    if (drain_thread_.joinable()) drain_thread_.join();
  }

 private:
  void accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
      if (!acceptor_.is_open()) return;  // closed by the shutdown
      if (ec) {
        spdlog::warn("ilf_serve: accepting a connection failed: {}", ec.message());
        accept_retry_.expires_after(kAcceptRetry);
        accept_retry_.async_wait([this](beast::error_code wait_ec) {
          if (!wait_ec) accept();
        });
        return;
      }
      if (state_.connections >= state_.options.max_connections) {
        spdlog::debug("ilf_serve: {} connections open; closing a new one", state_.options.max_connections);
        socket.close(ec);
      } else {
        ++state_.connections;
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<HttpSession>(std::move(socket), state_)->start();
      }
      accept();
    });
  }

  void wait_for_signal() {
    signals_.async_wait([this](beast::error_code ec, int signal) {
      if (ec) return;
      if (state_.stopping) {
        spdlog::info("ilf_serve: {} again; still waiting for the accepted requests", signal == SIGINT ? "SIGINT" : "SIGTERM");
      } else {
        begin_shutdown(signal);
      }
      wait_for_signal();
    });
  }

  // New requests get 503 from now on; the service finishes what it accepted (on a thread of its own: drain
  // blocks), then the responses still being written are let finish.
  void begin_shutdown(int signal) {
    spdlog::info("ilf_serve: {}: stopping (new requests get 503; waiting for the accepted ones)",
                 signal == SIGINT ? "SIGINT" : "SIGTERM");
    state_.stopping = true;
    beast::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
    drain_thread_ = std::thread([this]() {
      try {
        state_.service.drain();
      } catch (const std::exception& e) {
        spdlog::error("ilf_serve: draining the service failed: {}", e.what());
      }
      asio::post(strand_, [this]() {
        drained_ = true;
        // A response that cannot be written (a client that does not read) is given up after the write
        // timeout; this bounds the wait also for a job whose callback never came.
        grace_.expires_after(write_timeout(state_.options) + std::chrono::seconds(5));
        grace_.async_wait([this](beast::error_code ec) {
          if (ec) return;
          spdlog::warn("ilf_serve: {} responses still unwritten; stopping anyway", state_.unanswered.load());
          io_.stop();
        });
        stop_when_done();
      });
    });
  }

  void stop_when_done() {
    if (!drained_ || state_.unanswered > 0) return;
    spdlog::info("ilf_serve: every accepted request answered; stopped");
    io_.stop();
  }

  asio::io_context& io_;
  ServerState& state_;
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  asio::steady_timer accept_retry_;
  asio::steady_timer grace_;
  std::thread drain_thread_;
  bool drained_ = false;
};

}  // namespace

int run_server(ImageService& service, const ServerOptions& options, const std::function<void(int port)>& on_listening) {
  options.validate();
  // Destroyed in reverse: the listener's sockets and timers, then the io_context (and the sessions its
  // queued handlers still hold), then the state those sessions count themselves out of.
  ServerState state(service, options);
  asio::io_context io(options.io_threads);
  Listener listener(io, state);
  const int port = listener.listen();
  spdlog::info("ilf_serve: {}:{}; API key {}; bodies up to {} bytes; a request must arrive within {} s", options.host, port,
               options.api_key.empty() ? "not required" : "required", options.max_body_bytes, options.read_timeout_s);
  if (on_listening) on_listening(port);
  auto work = asio::make_work_guard(io);  // no early return while the drain thread has yet to post
  listener.start();
  std::vector<std::thread> threads;
  for (int i = 1; i < options.io_threads; ++i) threads.emplace_back([&io]() { io.run(); });
  io.run();
  for (std::thread& t : threads) t.join();
  {
    std::lock_guard<std::mutex> lock(state.bridge->mutex);
    state.bridge->open = false;
  }
  listener.join();
  std::unordered_map<const HttpSession*, std::shared_ptr<HttpSession>> waiting;
  {
    std::lock_guard<std::mutex> lock(state.waiting_mutex);
    waiting.swap(state.waiting);
  }
  waiting.clear();  // while the io_context still exists: their sockets close
  return 0;
}

}  // namespace ilf::serve
