#!/usr/bin/env python3
"""A load client for ilf_serve: C concurrent clients send image-generation requests for D seconds and the
run is summed up as images/s, requests answered 200 / 429 / otherwise, and latency percentiles, as one
Markdown table row and one JSON object. It exists to measure what cross-request batching buys under
load (scripts/serving/run_measurements.sh -> docs/results/serving.md) and, in a short run, to show that
a loaded server fails no request except by saying 429 (ctest Serve.LoadShort).

Why our own client and not wrk or hey (both are Debian packages): a request here costs 10 ms to
seconds of sampling, so a Python thread per client is far from being the bottleneck (a few hundred
requests/s at most), and our own loop can do what the measurement needs and they do not: count images
(n per answer, read from the JSON, which also checks that every 200 carries its images), tell 429
apart from other failures and honour its Retry-After instead of hammering a full queue, keep latencies
of successful requests only, and write JSON directly. wrk needs a Lua script for each of these; hey
retries a 429 at once, has a 20 s default timeout that large queues exceed, and prints text to parse.
Neither would be one more thing scripts/setup.sh must install.

Each client keeps one HTTP/1.1 connection (keep-alive; reopened after an error or a close), and stops
sending at D seconds; requests in flight then are awaited, so images/s is images received over the time
from the first request to the last answer. Only loopback addresses are accepted as targets.

    python3 scripts/serving/load_test.py --url http://127.0.0.1:8080 --concurrency 16 --duration 60 \\
        [--body '{"prompt": "7"}'] [--steps 20] [--method baseline] [--n 1] [--api-key-file F] \\
        [--label TEXT] [--json-out results.jsonl] [--markdown-header]
"""
import argparse
import http.client
import ipaddress
import json
import socket
import sys
import threading
import time
import urllib.parse

GENERATIONS = "/v1/images/generations"


def percentile(sorted_values, q):
    """The q-th percentile (0..100) by linear interpolation between closest ranks; None when empty."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def loopback_target(url):
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise SystemExit(f"load_test: --url must be http://HOST:PORT, got {url!r}")
    port = parsed.port or 80
    addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, port, proto=socket.IPPROTO_TCP)}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SystemExit(f"load_test: {parsed.hostname} is not a loopback address; load tests target this machine only")
    return parsed.hostname, port


class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = self.too_many = self.other = self.images = 0
        self.latencies = []
        self.statuses = {}
        self.errors = {}
        self.first_sent = None
        self.last_answer = None

    def add(self, sent, answered, status=None, images=0, error=None):
        with self.lock:
            self.first_sent = sent if self.first_sent is None else min(self.first_sent, sent)
            self.last_answer = answered if self.last_answer is None else max(self.last_answer, answered)
            if status == 200 and error is None:
                self.ok += 1
                self.images += images
                self.latencies.append(answered - sent)
            elif status == 429:
                self.too_many += 1
            else:
                self.other += 1
            key = str(status) if status is not None else "no answer"
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if error and len(self.errors) < 20:
                self.errors[error] = self.errors.get(error, 0) + 1


def client(index, host, port, make_body, headers, deadline, totals, timeout, retry_cap):
    connection = None
    sequence = 0
    while time.time() < deadline:
        body = make_body(index, sequence)
        sequence += 1
        sent = time.time()
        status, images, error, retry_after = None, 0, None, None
        try:
            if connection is None:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
            connection.request("POST", GENERATIONS, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status = response.status
            if status == 200:
                try:
                    answer = json.loads(data)
                    images = len(answer["data"])
                    if not images or not all(item.get("b64_json") for item in answer["data"]):
                        error = "a 200 without images"
                except (ValueError, KeyError, TypeError):
                    error = "a 200 whose body is not the images JSON"
            elif status == 429:
                retry_after = response.getheader("Retry-After")
            else:
                error = f"HTTP {status}: {data[:160].decode('utf-8', 'replace')}"
            if response.will_close:
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as e:
            error = f"{type(e).__name__}: {e}"
            if connection is not None:
                connection.close()
            connection = None
        totals.add(sent, time.time(), status, images, error)
        if status == 429:  # back off as asked (capped, so that a long Retry-After cannot idle the client)
            try:
                wait = float(retry_after) if retry_after is not None else retry_cap
            except ValueError:
                wait = retry_cap
            time.sleep(max(0.0, min(wait, retry_cap, deadline - time.time())))
        elif error and status is None:
            time.sleep(min(0.1, max(0.0, deadline - time.time())))  # a refused connection: do not spin
    if connection is not None:
        connection.close()


def run(args):
    host, port = loopback_target(args.url)
    body = json.loads(args.body)
    if not isinstance(body, dict):
        raise SystemExit("load_test: --body must be a JSON object")
    for key in ("steps", "method", "n"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    headers = {"Content-Type": "application/json"}
    if args.api_key_file:
        with open(args.api_key_file) as f:
            headers["Authorization"] = "Bearer " + f.read().strip()

    def make_body(index, sequence):  # every request its own seed: nothing is the same twice
        return json.dumps(dict(body, seed=index * 1000003 + sequence)).encode()

    totals = Totals()
    start = time.time()
    deadline = start + args.duration
    threads = [threading.Thread(target=client, args=(i, host, port, make_body, headers, deadline, totals, args.timeout,
                                                      args.retry_after_cap), daemon=True)
               for i in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + args.timeout + 30)
    span = (totals.last_answer - totals.first_sent) if totals.first_sent is not None else 0.0
    latencies = sorted(totals.latencies)
    result = {
        "label": args.label,
        "url": args.url,
        "body": body,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "span_s": round(span, 3),
        "requests_ok": totals.ok,
        "requests_429": totals.too_many,
        "requests_other": totals.other,
        "images": totals.images,
        "images_per_s": round(totals.images / span, 3) if span > 0 else 0.0,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_p99_s": percentile(latencies, 99),
        "statuses": totals.statuses,
        "errors": totals.errors,
    }
    return result


def markdown_header():
    return ("| setting | clients | s | requests ok | 429 | other | images/s | p50 s | p95 s | p99 s |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def markdown_row(r):
    def s(v):
        return "-" if v is None else f"{v:.2f}"
    return (f"| {r['label']} | {r['concurrency']} | {r['duration_s']:g} | {r['requests_ok']} | {r['requests_429']} | "
            f"{r['requests_other']} | {r['images_per_s']:.2f} | {s(r['latency_p50_s'])} | {s(r['latency_p95_s'])} | "
            f"{s(r['latency_p99_s'])} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--url", required=True, help="the server, http://127.0.0.1:PORT (loopback only)")
    parser.add_argument("--concurrency", "-c", type=int, default=1, help="clients sending at once")
    parser.add_argument("--duration", "-d", type=float, default=10, help="seconds of sending")
    parser.add_argument("--body", default='{"prompt": "7", "n": 1}', help="the request body (JSON object)")
    parser.add_argument("--steps", type=int, help="sets \"steps\" in the body")
    parser.add_argument("--method", help="sets \"method\" in the body")
    parser.add_argument("--n", type=int, help="sets \"n\" in the body")
    parser.add_argument("--api-key-file", help="sends Authorization: Bearer <the file's text>")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one answer")
    parser.add_argument("--retry-after-cap", type=float, default=1.0, help="longest wait after a 429, seconds")
    parser.add_argument("--label", default="", help="the setting's name in the table")
    parser.add_argument("--json-out", help="appends the result as one JSON line to this file")
    parser.add_argument("--markdown-header", action="store_true", help="prints the table header before the row")
    args = parser.parse_args()
    if args.concurrency < 1 or args.duration <= 0:
        raise SystemExit("load_test: --concurrency must be >= 1 and --duration > 0")
    result = run(args)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(json.dumps(result) + "\n")
    if args.markdown_header:
        print(markdown_header())
    print(markdown_row(result))
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
