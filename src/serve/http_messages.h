// The parts of the HTTP front that need no connection (src/serve/ only): the JSON bodies the routes
// answer (images, jobs, OpenAI's error object), the API key check, and the checks of the server's
// options and key file (serve/http_server.h). Split from http_server.cpp, which keeps the asynchronous
// part: the listener, the sessions, the routes and shutdown.
#pragma once
#include <string>
#include <string_view>

#include "ilf/io/config.h"
#include "ilf/serve/image_service.h"

namespace ilf::serve {

// JSON text of `value`; invalid UTF-8 (a message quoting a client's bytes) is replaced, not thrown on.
std::string json_text(const Json& value);
// Case-insensitive ASCII comparison (header values such as "100-continue" and the "Bearer" scheme).
bool iequals_ascii(std::string_view a, std::string_view b);

// OpenAI's error type for a status: "server_error" for ours (5xx), "invalid_request_error" for the client's.
std::string error_type_for(int status);
// {"error": {...}} for a status and message.
std::string error_body(int status, const std::string& message);
// The status and message of a failed or cancelled job, as a generation request answers it.
int job_error_status(const JobStatus& job);
std::string job_error_message(const JobStatus& job);
// 200 of POST /v1/images/generations: {"created", "data": [{"b64_json"}...], "ilf": {"seeds", "block_forwards"}}.
std::string images_body(const JobStatus& job);
// GET /v1/jobs/{id} and DELETE: the job's state, with its images when done and `with_images`.
std::string job_body(const JobStatus& job, bool with_images);

// "Authorization: Bearer KEY" with KEY equal to `api_key`: every way of failing gives the same answer,
// and the comparison takes the same time wherever the texts differ.
bool authorized(std::string_view header, const std::string& api_key);

}  // namespace ilf::serve
