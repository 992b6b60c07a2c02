#!/usr/bin/env python3
"""ilf_serve end to end, as a client sees it: the built server is started on a free port and driven over
HTTP, and what it answers is checked against the built ilf_sample. The server's promises are only worth
something if they hold from the outside: an image from the server is the image `ilf_sample` draws for
the same seed (pixels and "ilf" settings), a request batched with others gets the same image as alone,
a bad request is refused naming its field, limits and auth answer with their statuses, jobs can be
polled and cancelled, SIGTERM drains, and a client that disconnects, dribbles bytes or sends 100 MB
cannot stop the others. Bounded: six short server runs, about a minute on two cores.

    python3 tests/serve/serve_test.py BUILD_DIR SOURCE_DIR [--only SUBSTRING] [--keep]

The standard library only (the Debian stage's python3 has nothing else). The constants below are the
places to adapt when the server's wording or defaults change.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import (Server, TestFailure, check_error, expect, images_of, metric_value,  # noqa: E402
                          quiet_env, read_png_file)

C2I = ["--config", "configs/fashion_mnist.json"]  # the embedded class-to-image model (32 x 32, 10 classes)
T2I = ["--config", "configs/fashion_mnist_t2i.json", "--model-folder", "models/fashion_mnist_t2i"]
SNEAKER = 7  # Fashion-MNIST class 7, "sneaker"
API_KEY = "serve-test-key-4f1c9a"
READ_TIMEOUT = 3  # --read-timeout of the main server (the slow-client test waits for it)
REQUEST_TIMEOUT = 2  # --request-timeout of the limits server
# ilf_sample's "ilf" metadata keys that belong to one ilf_sample run (its labels, grid seeds, cost) and
# not to the settings an image was made with; every other key must be the same in the server's PNG.
PER_RUN_KEYS = {"seed", "classes", "block_forwards", "enlarged", "index"}

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Context:
    def __init__(self, build, source, work):
        self.build, self.source, self.work = build, source, work
        self.servers = {}
        self.key_file = os.path.join(work, "api_key.txt")
        with open(self.key_file, "w") as f:
            f.write(API_KEY + "\n")
        self.model_id = None
        self.last_port = None
        self.notes = []

    def tool(self, name):
        return os.path.join(self.build, name)

    def server(self, name, args, api_key=None, port=0):
        """The server `name`, started with `args` on first use and kept for the tests after."""
        if name in self.servers and self.servers[name].alive():
            return self.servers[name]
        command = [self.tool("ilf_serve"), *args, "--port", str(port)]
        s = Server(command, self.source, os.path.join(self.work, f"serve_{name}.log"), api_key=api_key)
        self.servers[name] = s
        s.start()
        self.last_port = s.port
        return s

    def main(self):
        """Class-to-image, batches of up to 8, an API key, a short read timeout."""
        return self.server("main", [*C2I, "--max-batch", "8", "--read-timeout", str(READ_TIMEOUT),
                                    "--api-key-file", self.key_file], api_key=API_KEY)

    def sample(self, args, out):
        """The built ilf_sample, as the reference for the server's images."""
        command = [self.tool("ilf_sample"), *args, "--no-enlarge", "--quiet", "--out", out]
        r = subprocess.run(command, cwd=self.source, env=quiet_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        expect(r.returncode == 0, f"{' '.join(command)} failed (exit {r.returncode}):\n{r.stdout}")
        return read_png_file(out)

    def stop_all(self):
        for s in self.servers.values():
            s.kill()


def same_settings(server_png, sample_png, what):
    """The server's "ilf" settings equal ilf_sample's, but for the keys of one ilf_sample run."""
    mine, theirs = server_png.settings(), sample_png.settings()
    for key, value in theirs.items():
        if key in PER_RUN_KEYS:
            continue
        expect(key in mine, f"{what}: the server's \"ilf\" metadata lacks {key!r} (ilf_sample has {value!r})")
        expect(mine[key] == value, f"{what}: \"ilf\" metadata {key!r}: server {mine[key]!r}, ilf_sample {value!r}")


def run_concurrently(calls, timeout=120):
    """Runs each call in a thread at once; returns their results (an exception where one raised)."""
    results = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as e:  # reported by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


def poll_job(server, job_id, until, timeout=60):
    """GET /v1/jobs/{id} until its status is in `until`; returns the last status object."""
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        r = server.get(f"/v1/jobs/{job_id}")
        expect(r.status == 200, f"GET /v1/jobs/{job_id}: {r!r}")
        last = r.json()
        if last.get("status") in until:
            return last
        time.sleep(0.05)
    raise TestFailure(f"job {job_id}: status {last and last.get('status')!r} after {timeout} s, expected {until}")


def create_job(server, body):
    r = server.post("/v1/jobs", body)
    expect(r.status == 202, f"POST /v1/jobs {body}: expected 202, got {r!r}")
    job = r.json()
    expect(isinstance(job.get("id"), str) and job["id"], f"POST /v1/jobs: no id: {job}")
    expect(job.get("status") in ("queued", "running"), f"POST /v1/jobs: status {job.get('status')!r}")
    return job["id"]


def pixels(body, what):
    return [png.pixels for png in images_of(body, what=what)]


# ---- the main server: class-to-image, batching, an API key ------------------------------------------


@test
def endpoints_answer_and_unknown_routes_are_404_or_405(ctx):
    s = ctx.main()
    r = s.get("/health", auth=False)
    expect(r.status == 200, f"GET /health without a key: {r!r}")
    r = s.get("/v1/models")
    expect(r.status == 200, f"GET /v1/models: {r!r}")
    models = r.json()
    expect(models.get("object") == "list" and models.get("data"), f"GET /v1/models: {models}")
    model = models["data"][0]
    expect(model.get("object") == "model" and model.get("owned_by") == "ilf" and isinstance(model.get("id"), str),
           f"GET /v1/models: {model}")
    ctx.model_id = model["id"]
    check_error(s.get("/v1/no-such-route"), 404, what="GET /v1/no-such-route")
    check_error(s.get("/v1/images/generations"), 405, what="GET /v1/images/generations")
    check_error(s.request("DELETE", "/v1/models"), 405, what="DELETE /v1/models")
    s.generate({"prompt": "3", "seed": 1, "model": ctx.model_id})
    r = s.get("/metrics")
    expect(r.status == 200 and r.headers.get("content-type", "").startswith("text/plain"),
           f"GET /metrics: HTTP {r.status}, Content-Type {r.headers.get('content-type')!r} (Prometheus: text/plain)")
    text = r.body.decode("utf-8")
    for name in ("ilf_http_requests_total", "ilf_queue_depth", "ilf_images_total", "ilf_block_forwards_total",
                 "ilf_batches_total", "ilf_request_duration_seconds_count", "ilf_request_duration_seconds_bucket"):
        expect(metric_value(text, name) is not None, f"GET /metrics has no sample of {name}:\n{text[:2000]}")
    expect(metric_value(text, "ilf_images_total") >= 1, "ilf_images_total < 1 after an image")
    expect(metric_value(text, "ilf_http_requests_total", status="404") is not None,
           "ilf_http_requests_total has no status=\"404\" sample after a 404")


@test
def api_key_is_needed_everywhere_but_health(ctx):
    s = ctx.main()
    body = {"prompt": "3", "seed": 1}
    for headers, what in (({}, "no Authorization"), ({"Authorization": "Bearer wrong-key"}, "a wrong key"),
                          ({"Authorization": "Basic " + API_KEY}, "Basic instead of Bearer"),
                          ({"Authorization": "Bearer " + API_KEY + "x"}, "the key with one more character")):
        r = s.post("/v1/images/generations", body, headers=headers, auth=False)
        check_error(r, 401, what=f"POST with {what}")
        expect(b"wrong-key" not in r.body and API_KEY.encode() not in r.body, f"the 401 repeats the key: {r!r}")
    for path in ("/v1/models", "/metrics", "/v1/jobs/x"):
        check_error(s.get(path, auth=False), 401, what=f"GET {path} without a key")
    expect(s.get("/health", auth=False).status == 200, "GET /health without a key is not 200")
    expect(s.get("/v1/models").status == 200, "GET /v1/models with the key is not 200")


@test
def an_image_is_the_image_ilf_sample_draws_for_the_same_seed(ctx):
    s = ctx.main()
    n, seed = 3, 5
    before = time.time()
    body = s.generate({"prompt": str(SNEAKER), "n": n, "seed": seed, "size": "32x32", "response_format": "b64_json",
                       "model": ctx.model_id or "fashion_mnist", "user": "serve_test"})
    expect(isinstance(body.get("created"), int) and before - 5 <= body["created"] <= time.time() + 5,
           f"\"created\" is not the time in unix seconds: {body.get('created')}")
    pngs = images_of(body, n, "class-to-image")
    reference = ctx.sample([*C2I, "--class", str(SNEAKER), "--batch", str(n), "--seed", str(seed)],
                           os.path.join(ctx.work, "c2i.png"))
    for i, png in enumerate(pngs):
        expect((png.width, png.height) == (32, 32), f"image {i} is {png.width}x{png.height}, expected 32x32")
        expect(png.pixels == reference.tile(i, n, 32, 32), f"image {i}: pixels differ from ilf_sample's (class "
                                                             f"{SNEAKER}, seed {seed}, --batch {n})")
        same_settings(png, reference, f"image {i}")
    ilf = body.get("ilf", {})
    expect(isinstance(ilf.get("seeds"), list) and ilf["seeds"] and ilf["seeds"][0] == seed, f"\"ilf\".seeds: {ilf}")
    expect(ilf.get("block_forwards") == reference.settings()["block_forwards"],
           f"\"ilf\".block_forwards {ilf.get('block_forwards')} != ilf_sample's {reference.settings()['block_forwards']}")
    by_name = s.generate({"prompt": "sneaker", "n": n, "seed": seed})
    expect(pixels(by_name, "sneaker") == [p.pixels for p in pngs], "prompt \"sneaker\" differs from prompt \"7\"")


@test
def batched_requests_get_the_images_they_get_alone_and_plans_are_not_mixed(ctx):
    s = ctx.main()
    before = s.metrics()
    # A blocker of another plan keeps the worker busy while the requests below queue up together.
    blocker = create_job(s, {"prompt": "1", "n": 4, "steps": 40, "seed": 99})
    poll_job(s, blocker, ("running", "done"))
    # Two plans whose 7 images would fit one batch of 8 if plans were mixed.
    requests = [{"prompt": p, "seed": seed, "n": n} for p, seed, n in (("0", 1, 1), ("3", 2, 1), ("7", 3, 2), ("9", 4, 1))]
    requests += [{"prompt": "7", "seed": 3, "steps": 12}, {"prompt": "1", "seed": 8, "steps": 12}]  # another plan
    batched = run_concurrently([lambda b=b: s.generate(b) for b in requests])
    after = s.metrics()
    poll_job(s, blocker, ("done",))
    batches = metric_value(after, "ilf_batches_total") - metric_value(before, "ilf_batches_total")
    images = metric_value(after, "ilf_images_total") - metric_value(before, "ilf_images_total")
    expect(images == 4 + 5 + 2, f"ilf_images_total grew by {images}, expected 11 (the blocker's 4 and 7 queued)")
    # The blocker's batch, one of the four default-plan requests, one of the two 12-step ones (one batch
    # for all six would be plans mixed; six batches would be no batching).
    expect(batches == 3, f"ilf_batches_total grew by {batches}: expected 3 (the blocker, then one batch per plan "
                         f"for the 6 requests queued behind it)")
    for body, answer in zip(requests, batched):
        alone = s.generate(body)
        what = f"request {body}"
        expect(pixels(answer, what) == pixels(alone, what), f"{what}: batched images differ from the images alone")
        expect(answer.get("ilf", {}).get("block_forwards") == alone.get("ilf", {}).get("block_forwards"),
               f"{what}: block_forwards batched {answer.get('ilf')} alone {alone.get('ilf')}")
        steps = body.get("steps", 11)
        for png in images_of(answer, what=what):
            expect(png.settings().get("steps") == steps, f"{what}: a PNG made with {png.settings().get('steps')} steps")


@test
def bad_requests_are_400_naming_the_field(ctx):
    s = ctx.main()
    cases = [  # (body, param expected: a name, "settings*" for any param starting with "settings", None: any)
        (b'{"prompt": "7", ', None),  # malformed JSON
        (b"[1, 2]", None),  # not an object
        ({"prompt": "7", "colour": "red"}, "colour"),  # unknown field
        ({"n": 1}, "prompt"),  # missing prompt
        ({"prompt": 7}, "prompt"),  # wrong type
        ({"prompt": "dragon"}, "prompt"),  # neither a class index nor a class name
        ({"prompt": "10"}, "prompt"),  # class index outside the model's 10
        ({"prompt": "7", "n": "2"}, "n"),
        ({"prompt": "7", "n": 2.5}, "n"),
        ({"prompt": "7", "n": 0}, "n"),
        ({"prompt": "7", "n": 11}, "n"),  # --max-images-per-request 10
        ({"prompt": "7", "steps": 201}, "steps"),  # --max-steps 200
        ({"prompt": "7", "steps": 0}, "steps"),
        ({"prompt": "7", "size": "64x64"}, "size"),  # class-to-image: only the model's own size
        ({"prompt": "7", "size": "big"}, "size"),
        ({"prompt": "7", "size": "4096x4096"}, "size"),  # --max-image-side 2048
        ({"prompt": "7", "response_format": "url"}, "response_format"),
        ({"prompt": "7", "seed": -1}, "seed"),
        ({"prompt": "7", "seed": 18446744073709551616}, "seed"),
        ({"prompt": "7", "method": "magic"}, "method"),
        ({"prompt": "7", "guidance_scale": -1}, "guidance_scale"),
        ({"prompt": "7", "settings": "ilf.strength=1"}, "settings*"),
        ({"prompt": "7", "settings": {"ilf.feedback_weights": "x"}}, "settings*"),  # names a file
        ({"prompt": "7", "settings": {"weights": "models/fashion_mnist/backbone.safetensors"}}, "settings*"),
        ({"prompt": "7", "settings": {"teacache.calibration": "models/fashion_mnist/teacache.json"}}, "settings*"),
        ({"prompt": "7", "settings": {"ilf.no_such_key": 1}}, "settings*"),  # unknown setting key
        ({"prompt": "7", "settings": {"ilf.strength": "strong"}}, "settings*"),  # a value the parser refuses
        ({"prompt": "7", "settings": {"sampling.steps": 201}}, "settings*"),  # --max-steps holds for settings too
    ]
    for body, param in cases:
        r = s.post("/v1/images/generations", body)
        what = f"POST {body if isinstance(body, dict) else body.decode()}"
        if param is None:
            check_error(r, 400, what=what)
        elif param.endswith("*"):
            error = check_error(r, 400, param_prefix=param[:-1], what=what)
            key = next(iter(body["settings"])) if isinstance(body.get("settings"), dict) else "settings"
            expect(key in error["message"], f"{what}: the message does not name {key!r}: {error['message']}")
        else:
            error = check_error(r, 400, param=param, what=what)
            expect(param in error["message"], f"{what}: the message does not name {param!r}: {error['message']}")
    # The model must be the served one (OpenAI answers an unknown model with 404; 400 is as good here).
    r = s.post("/v1/images/generations", {"prompt": "7", "model": "dall-e-3"})
    check_error(r, r.status if r.status in (400, 404) else 400, param="model", what="POST with model dall-e-3")
    expect(s.get("/health").status == 200, "the server stopped answering after the bad requests")


def raw_request(port, head, body_size, chunk=65536, timeout=10):
    """Sends `head` and then up to `body_size` zero bytes, reading the response as soon as one comes
    (the server may answer before the body is all there). Returns (status line or None, bytes sent,
    seconds until the answer or the connection's end)."""
    start = time.time()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        zeros = bytes(chunk)
        data = b""
        while time.time() - start < timeout:
            readable, _, _ = select.select([sock], [], [], 0 if sent < body_size else 0.5)
            if readable:
                try:
                    part = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not part:
                    break
                data += part
                if b"\r\n" in data:
                    break
                continue
            if sent < body_size:
                try:
                    sent += sock.send(zeros[:min(chunk, body_size - sent)])
                except (BrokenPipeError, ConnectionResetError):
                    try:  # the answer may be waiting unread
                        data += sock.recv(65536)
                    except OSError:
                        pass
                    break
        status = data.split(b"\r\n", 1)[0].decode("latin-1") if b"\r\n" in data else None
        return status, sent, time.time() - start


@test
def oversized_bodies_are_413_at_once_and_the_server_lives(ctx):
    s = ctx.main()
    for size in (2 << 20, 100 << 20):  # over --max-body-bytes (1 MiB), and a 100 MB upload
        head = (f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
        status, sent, seconds = raw_request(s.port, head, size)
        expect(status is not None and " 413 " in status + " ",
               f"a {size >> 20} MB body: expected a 413 status line, got {status!r} after {sent} bytes in {seconds:.1f} s"
               f" (a server that closes with the body unread resets the connection, which can destroy its 413 "
               f"before the client reads it: shut down the sending side and discard what comes for a moment)")
        expect(seconds < 5, f"a {size >> 20} MB body: the 413 took {seconds:.1f} s")
        expect(s.alive() and s.get("/health").status == 200, "the server is not answering after the 413")
    # A JSON body within the limit but with a huge prompt is a 400, not a crash.
    check_error(s.post("/v1/images/generations", {"prompt": "x" * 900000}), 400, param="prompt", what="a 900 kB prompt")


@test
def jobs_are_created_polled_and_cancelled(ctx):
    s = ctx.main()
    body = {"prompt": "9", "n": 2, "seed": 11}
    job = create_job(s, body)
    done = poll_job(s, job, ("done", "failed", "cancelled"))
    expect(done.get("status") == "done", f"job {job}: {done}")
    expect(done.get("id") == job and done.get("steps") == 11 and done.get("step") == 11, f"job {job}: {done}")
    expect(pixels(done, "job") == pixels(s.generate(body), "sync"), "a job's images differ from the same request's")
    check_error(s.get("/v1/jobs/no-such-job"), 404, what="GET /v1/jobs/no-such-job")
    check_error(s.request("DELETE", "/v1/jobs/no-such-job"), 404, what="DELETE /v1/jobs/no-such-job")

    # A blocker, then two jobs of one plan (they run as one batch) and one of another plan (it waits).
    blocker = create_job(s, {"prompt": "1", "n": 4, "steps": 30, "seed": 99})
    poll_job(s, blocker, ("running", "done"))
    first = create_job(s, {"prompt": "1", "steps": 60, "seed": 1})
    second_body = {"prompt": "2", "steps": 60, "seed": 2}
    second = create_job(s, second_body)
    queued = create_job(s, {"prompt": "4", "steps": 59, "seed": 4})
    r = s.request("DELETE", f"/v1/jobs/{queued}")
    expect(r.status in (200, 202, 204), f"DELETE a queued job: {r!r}")
    expect(poll_job(s, queued, ("cancelled", "done", "failed"), 5).get("status") == "cancelled",
           "a queued job was not cancelled")
    running = poll_job(s, first, ("running", "done", "failed", "cancelled"))
    expect(running.get("status") == "running", f"the first job did not run: {running}")
    expect(running.get("steps") == 60 and 0 <= running.get("step", -1) <= 60, f"a running job's step: {running}")
    r = s.request("DELETE", f"/v1/jobs/{first}")
    expect(r.status in (200, 202, 204), f"DELETE a running job: {r!r}")
    expect(poll_job(s, first, ("cancelled", "done", "failed"), 10).get("status") == "cancelled",
           "a running job was not cancelled")
    # Its batch goes on for the other job, whose images are what that request gets alone.
    second_done = poll_job(s, second, ("done", "failed", "cancelled"))
    expect(second_done.get("status") == "done", f"the cancelled job's batch-mate did not finish: {second_done}")
    expect(pixels(second_done, "batch-mate") == pixels(s.generate(second_body), "alone"),
           "the cancelled job's batch-mate has other images than alone")
    r = s.request("DELETE", f"/v1/jobs/{second}")  # a finished job stays as it is
    expect(r.status in (200, 202, 204), f"DELETE a done job: {r!r}")
    expect(poll_job(s, second, ("done", "cancelled", "failed")).get("status") == "done", "a done job changed on DELETE")


@test
def a_request_that_fails_inside_sampling_fails_alone(ctx):
    # An inner loop the feedback module was not trained for (ilf.loop_begin 5; the module's is 4..7) passes
    # the request checks, which plan without weights, and fails in the worker when the module is loaded
    # for it: a 500 naming the loop, while the request beside it gets its images and the server goes on.
    # (cache.num_blocks 13 on a 12-block model is refused before queueing: 400 naming the key.)
    s = ctx.main()
    refused = s.post("/v1/images/generations", {"prompt": "3", "method": "cache", "settings": {"cache.num_blocks": 13}})
    error = check_error(refused, 400, what="cache.num_blocks 13")
    expect("num_blocks" in error["message"], f"the error does not name cache.num_blocks: {error}")
    bad = {"prompt": "3", "settings": {"ilf.loop_begin": 5}, "seed": 21}
    good = {"prompt": "3", "seed": 21}
    r_bad, r_good = run_concurrently([lambda: s.post("/v1/images/generations", bad),
                                      lambda: s.post("/v1/images/generations", good)])
    error = check_error(r_bad, 500, what="ilf.loop_begin 5")
    expect("loop" in error["message"], f"the error does not say what failed: {error}")
    expect(r_good.status == 200, f"the request beside the failing one: {r_good!r}")
    expect(pixels(s.generate(good), "again") == pixels(r_good.json(), "beside"), "the good request's images changed")


@test
def clients_that_disconnect_or_dribble_do_not_stop_the_others(ctx):
    s = ctx.main()
    head = (f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\n")
    # 1. Disconnects: mid-generation, and mid-body.
    body = json.dumps({"prompt": "5", "n": 4, "steps": 40}).encode()
    with socket.create_connection(("127.0.0.1", s.port)) as sock:
        sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", s.port)) as sock:
        sock.sendall(head.encode() + b"Content-Length: 100\r\n\r\n{\"prompt\": ")
    s.generate({"prompt": "5", "seed": 2})
    expect(s.alive(), "the server died after clients disconnected")

    # 2. A client sending a byte a second: the others are answered meanwhile, and it is cut off after the
    # read timeout (whole request), not kept while it keeps sending.
    request = (head + "Content-Length: 20\r\n\r\n" + '{"prompt": "5"}     ').encode()
    cut = {}

    def dribble():
        start = cut["start"]
        with socket.create_connection(("127.0.0.1", s.port), timeout=READ_TIMEOUT + 10) as sock:
            for i, byte in enumerate(request):
                readable, _, _ = select.select([sock], [], [], 1.0 if i else 0)
                if readable:
                    try:
                        data = sock.recv(4096)
                    except ConnectionResetError:
                        data = b""
                    cut.update(seconds=time.time() - start, bytes=i, answer=data[:40])
                    return
                try:
                    sock.send(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    cut.update(seconds=time.time() - start, bytes=i, answer=b"")
                    return
                if time.time() - start > READ_TIMEOUT + 8:
                    return

    cut["start"] = time.time()
    slow = threading.Thread(target=dribble, daemon=True)
    slow.start()
    time.sleep(0.5)
    s.generate({"prompt": "6", "seed": 3})
    expect(s.get("/health").status == 200, "GET /health while a client dribbles")
    answered = time.time() - cut["start"]  # when the others were answered, from the slow client's start
    slow.join(READ_TIMEOUT + 12)
    expect("seconds" in cut, f"a client sending a byte a second was not cut off within {READ_TIMEOUT + 8} s "
                             f"(--read-timeout {READ_TIMEOUT})")
    expect(answered < cut["seconds"], f"the other requests took {answered:.1f} s, longer than the slow client lived")
    expect(READ_TIMEOUT - 1 <= cut["seconds"] <= READ_TIMEOUT + 3,
           f"the slow client was cut off after {cut['seconds']:.1f} s, expected about --read-timeout {READ_TIMEOUT}")
    expect(cut["answer"] == b"" or cut["answer"].startswith(b"HTTP/1.1 408"),
           f"the slow client got {cut['answer']!r} (expected the connection closed, or a 408)")
    expect(s.alive() and s.get("/health").status == 200, "the server is not answering after the slow client")


# ---- a server with a queue of one and a short request timeout ----------------------------------------


@test
def a_full_queue_is_429_with_retry_after_and_a_late_request_504(ctx):
    # Requests of 8 images x 200 steps (many seconds) in batches of at most 8 (whether a request of n
    # images may run when n > --max-batch is the service's to say: avoided here).
    s = ctx.server("limits", [*C2I, "--max-queue", "1", "--max-batch", "8", "--request-timeout", str(REQUEST_TIMEOUT)])
    slow = {"n": 8, "steps": 200}
    running = create_job(s, {"prompt": "1", **slow})
    poll_job(s, running, ("running",), 10)
    waiting = create_job(s, {"prompt": "2", **slow})
    for path in ("/v1/images/generations", "/v1/jobs"):
        r = s.post(path, {"prompt": "3"})
        check_error(r, 429, what=f"POST {path} with the queue full")
        retry = r.headers.get("retry-after", "")
        expect(retry.isdigit() and int(retry) >= 1, f"a 429 without Retry-After in whole seconds: {r.headers}")
    try:
        for job in (running, waiting):  # from submission: the queued one's time runs too
            state = poll_job(s, job, ("failed", "done", "cancelled"), REQUEST_TIMEOUT + 8)
            expect(state.get("status") == "failed", f"job {job} past --request-timeout {REQUEST_TIMEOUT}: {state}")
    finally:
        for job in (running, waiting):
            s.request("DELETE", f"/v1/jobs/{job}")
    start = time.time()
    check_error(s.post("/v1/images/generations", {"prompt": "4", **slow}), 504, what="a request past its timeout")
    took = time.time() - start
    expect(REQUEST_TIMEOUT - 0.5 <= took <= REQUEST_TIMEOUT + 4, f"the 504 came after {took:.1f} s "
                                                                 f"(--request-timeout {REQUEST_TIMEOUT})")
    s.generate({"prompt": "4", "seed": 1})  # and the worker is free again


# ---- SIGTERM, kill -9 and a restart on the same port ------------------------------------------------


@test
def sigterm_refuses_new_requests_finishes_accepted_ones_and_exits_0(ctx):
    s = ctx.server("drain", C2I)
    port = s.port
    slow = {"prompt": "5", "n": 4, "steps": 60, "method": "baseline", "seed": 7}
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=s.post("/v1/images/generations", slow)), daemon=True)
    worker.start()
    deadline = time.time() + 3
    while time.time() < deadline:  # until it runs (ilf_running_images, where the server has it; else 0.5 s)
        running = metric_value(s.metrics(), "ilf_running_images")
        if running is None:
            time.sleep(0.5)
            break
        if running > 0:
            break
        time.sleep(0.05)
    s.signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        r = s.post("/v1/images/generations", {"prompt": "1"}, timeout=10)
        check_error(r, 503, what="a request after SIGTERM")
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        pass  # not accepting any more is as good as a 503
    worker.join(60)
    expect("r" in result and result["r"].status == 200, f"the request in flight at SIGTERM: {result.get('r')!r}")
    images_of(result["r"].json(), 4, "in flight at SIGTERM")
    rc = s.wait(30)
    expect(rc == 0, f"ilf_serve exited with status {rc} after SIGTERM:\n{s.log_tail()}")
    ctx.drained_port = port


@test
def after_kill_9_a_restart_on_the_same_port_serves_again(ctx):
    port = getattr(ctx, "drained_port", None) or ctx.last_port
    s = ctx.server("killed", C2I, port=port)
    expect(s.port == port, f"asked for port {port}, listening on {s.port}")
    result = {}
    threading.Thread(target=lambda: result.update(r=_catch(lambda: s.post("/v1/images/generations",
                                                                          {"prompt": "2", "n": 4, "steps": 60}))),
                     daemon=True).start()
    time.sleep(0.5)
    s.proc.kill()
    s.proc.wait()
    again = ctx.server("restarted", C2I, port=port)
    expect(again.port == port, f"the restart listens on {again.port}, not {port}")
    expect(again.get("/health").status == 200, "GET /health after the restart")
    again.generate({"prompt": "2", "seed": 1})
    expect(again.stop() == 0, f"the restarted server's exit status after SIGTERM:\n{again.log_tail()}")


def _catch(call):
    try:
        return call()
    except Exception as e:
        return e


# ---- text-to-image ----------------------------------------------------------------------------------


@test
def text_to_image_is_the_image_ilf_sample_draws_for_the_prompt_and_seed(ctx):
    s = ctx.server("t2i", T2I)
    prompt, n, seed = "a photo of a sneaker", 2, 3
    body = s.generate({"prompt": prompt, "n": n, "seed": seed})
    pngs = images_of(body, n, "text-to-image")
    reference = ctx.sample([*T2I, "--prompt", prompt, "--batch", str(n), "--seed", str(seed)],
                           os.path.join(ctx.work, "t2i.png"))
    for i, png in enumerate(pngs):
        expect((png.width, png.height) == (32, 32), f"image {i} is {png.width}x{png.height}, expected 32x32")
        expect(png.pixels == reference.tile(i, n, 32, 32), f"image {i}: pixels differ from ilf_sample's")
        same_settings(png, reference, f"text-to-image image {i}")
        if "seed" in png.settings():
            expect(png.settings()["seed"] == seed + i, f"image {i}'s seed {png.settings()['seed']}, expected {seed + i}")
    expect(body.get("ilf", {}).get("seeds") == [seed + i for i in range(n)], f"\"ilf\".seeds: {body.get('ilf')}")
    check_error(s.post("/v1/images/generations", {"prompt": prompt, "negative_prompt": 3}), 400,
                param="negative_prompt", what="a negative_prompt that is not text")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    if only:
        args.remove(only)
    if len(args) != 2:
        print(__doc__)
        return 2
    build, source = (os.path.abspath(a) for a in args)
    for tool in ("ilf_serve", "ilf_sample"):
        if not os.access(os.path.join(build, tool), os.X_OK):
            print(f"FAILED: {os.path.join(build, tool)} is not there (build it first)")
            return 1
    work = tempfile.mkdtemp(prefix="ilf-serve-test-")
    ctx = Context(build, source, work)
    passed, failed, start = 0, 0, time.time()
    try:
        for fn in TESTS:
            if only and only not in fn.__name__:
                continue
            t0 = time.time()
            try:
                fn(ctx)
                passed += 1
                print(f"ok   {time.time() - t0:5.1f} s  {fn.__name__}", flush=True)
            except Exception as e:
                failed += 1
                print(f"FAIL {time.time() - t0:5.1f} s  {fn.__name__}: {e}", flush=True)
                if not isinstance(e, TestFailure):
                    traceback.print_exc()
                for name, server in ctx.servers.items():
                    print(f"     server {name} (port {server.port}, {'running' if server.alive() else 'exited'}):")
                    print(server.log_tail(12))
    finally:
        ctx.stop_all()
        if "--keep" in sys.argv:
            print(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for note in ctx.notes:
        print(f"NOTE: {note}")
    print(f"serve tests took {time.time() - start:.0f} s")
    print(f"serve: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
