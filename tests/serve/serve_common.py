"""What the ilf_serve tests share: starting the built server on a free port and reading the port from its
output, plain HTTP requests to it (the standard library only: the Debian stage's Python has nothing
else), decoding its PNGs down to their pixels and "ilf" text chunk, and cutting ilf_sample's image
grids into tiles. tests/serve/serve_test.py and tests/serve/openai_client_test.py use it; keeping it
in one place keeps the two tests' idea of "the same image" and of a started server the same.

The server prints "ilf_serve: listening on http://HOST:PORT" once its socket listens (--port 0 picks a
free port); LISTENING below is the one place that knows the wording.
"""
import base64
import http.client
import json
import math
import os
import re
import signal
import struct
import subprocess
import threading
import time
import zlib

LISTENING = re.compile(r"listening on http://(\[[^\]]+\]|[^\s:/]+):(\d+)")


class TestFailure(Exception):
    """A check that failed; the message says what was expected and what came."""


def expect(condition, message):
    if not condition:
        raise TestFailure(message)


def quiet_env():
    """One thread each for torch and BLAS: two cores are shared with other tests, and ilf_sample and the
    server must compute with the same threading to give the same pixels."""
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TestFailure(f"HTTP {self.status}: the body is not JSON ({e}): {self.body[:300]!r}")

    def __repr__(self):
        return f"HTTP {self.status} {self.body[:400]!r}"


class Server:
    """One ilf_serve process: started with --port PORT (0 = any free port), its combined stdout and
    stderr kept in `log_path` and read for the listening line."""

    def __init__(self, command, cwd, log_path, api_key=None, env=None):
        self.command = list(command)
        self.cwd = cwd
        self.log_path = log_path
        self.api_key = api_key
        self.env = env or quiet_env()
        self.proc = None
        self.host = None
        self.port = None
        self._lines = []
        self._listening = threading.Event()
        self._reader = None

    def start(self, timeout=90):
        self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        deadline = time.time() + timeout
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise TestFailure(f"ilf_serve exited with status {self.proc.returncode} before listening:\n{self.log_tail()}")
            if time.time() > deadline:
                raise TestFailure(f"ilf_serve did not print 'listening on http://HOST:PORT' within {timeout} s:\n"
                                  f"{self.log_tail()}")
        return self

    def _read_output(self):
        with open(self.log_path, "ab") as log:
            for raw in iter(self.proc.stdout.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._lines.append(line)
                m = LISTENING.search(line)
                if m and not self._listening.is_set():
                    self.host = m.group(1).strip("[]")
                    self.port = int(m.group(2))
                    self._listening.set()

    def log_tail(self, lines=30):
        return "\n".join("    | " + line for line in self._lines[-lines:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path, body=None, headers=None, auth=True, timeout=120):
        """One request on a new connection. `body`: bytes, or an object sent as JSON. With `auth` and an
        API key, "Authorization: Bearer KEY" is added unless `headers` has an Authorization of its own."""
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        if auth and self.api_key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = "Bearer " + self.api_key
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            r = connection.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            connection.close()

    def post(self, path, body, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def generate(self, body, expect_status=200, **kwargs):
        """POST /v1/images/generations; checks the status and returns the JSON body."""
        r = self.post("/v1/images/generations", body, **kwargs)
        expect(r.status == expect_status, f"POST /v1/images/generations {json.dumps(body)[:200]}: expected HTTP "
                                          f"{expect_status}, got {r!r}")
        return r.json()

    def metrics(self):
        r = self.get("/metrics")
        expect(r.status == 200, f"GET /metrics: {r!r}")
        return r.body.decode("utf-8")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"ilf_serve did not exit within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout=60):
        """SIGTERM, then SIGKILL when it does not exit in time; returns the exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure(f"ilf_serve did not exit within {timeout} s of SIGTERM:\n{self.log_tail()}")

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


# ---- the service's answers ------------------------------------------------------------------------


def check_error(response, status, param=None, param_prefix=None, what=""):
    """An OpenAI error object {"error": {"message", "type", "param", "code"}} with HTTP `status`; `param`
    the field at fault (or one starting with `param_prefix`). Returns the error object."""
    expect(response.status == status, f"{what}: expected HTTP {status}, got {response!r}")
    expect("application/json" in response.headers.get("content-type", ""),
           f"{what}: Content-Type {response.headers.get('content-type')!r}, expected application/json")
    body = response.json()
    expect(isinstance(body, dict) and isinstance(body.get("error"), dict),
           f"{what}: expected {{\"error\": {{...}}}}, got {response!r}")
    error = body["error"]
    for key in ("message", "type", "param", "code"):
        expect(key in error, f"{what}: the error object has no \"{key}\": {error}")
    expect(isinstance(error["message"], str) and error["message"], f"{what}: empty error message: {error}")
    if param is not None:
        expect(error["param"] == param, f"{what}: expected param {param!r}, got {error['param']!r} ({error['message']})")
    if param_prefix is not None:
        expect(isinstance(error["param"], str) and error["param"].startswith(param_prefix),
               f"{what}: expected param starting with {param_prefix!r}, got {error['param']!r} ({error['message']})")
    return error


def images_of(body, n=None, what=""):
    """The PNGs of a generation answer {"created", "data": [{"b64_json"}], "ilf": {...}}, decoded."""
    expect(isinstance(body, dict) and isinstance(body.get("data"), list), f"{what}: no \"data\" list: {str(body)[:300]}")
    if n is not None:
        expect(len(body["data"]) == n, f"{what}: expected {n} images, got {len(body['data'])}")
    pngs = []
    for i, item in enumerate(body["data"]):
        expect(isinstance(item, dict) and isinstance(item.get("b64_json"), str), f"{what}: data[{i}] has no b64_json")
        try:
            raw = base64.b64decode(item["b64_json"], validate=True)
        except ValueError as e:
            raise TestFailure(f"{what}: data[{i}].b64_json is not base64: {e}")
        pngs.append(decode_png(raw, f"{what} data[{i}]"))
    return pngs


def metric_value(text, name, **labels):
    """The sum of the samples of metric `name` (exact name) whose labels include `labels`; None when the
    metric has no sample at all."""
    total, found = 0.0, False
    pattern = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = pattern.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    return total if found else None


# ---- PNG ----------------------------------------------------------------------------------------


class Png:
    def __init__(self, width, height, channels, pixels, text):
        self.width, self.height, self.channels = width, height, channels
        self.pixels = pixels  # rows of width * channels bytes, top to bottom
        self.text = text      # tEXt keyword -> text

    def settings(self):
        """The "ilf" text chunk (the generation settings, JSON)."""
        expect("ilf" in self.text, f"the PNG has no \"ilf\" text chunk (has {sorted(self.text)})")
        return json.loads(self.text["ilf"])

    def tile(self, index, count, tile_width, tile_height, padding=2):
        """Image `index` of a grid of `count` images as io/image.h's make_image_grid lays them out:
        ceil(sqrt(count)) columns, `padding` pixels around each; count 1 is the image itself."""
        if count == 1:
            return self.pixels
        columns = math.ceil(math.sqrt(count))
        r, c = divmod(index, columns)
        top, left = padding + r * (tile_height + padding), padding + c * (tile_width + padding)
        row_bytes = self.width * self.channels
        out = bytearray()
        for y in range(top, top + tile_height):
            start = y * row_bytes + left * self.channels
            out += self.pixels[start:start + tile_width * self.channels]
        return bytes(out)


def decode_png(data, what="PNG"):
    """An 8-bit PNG (grey, grey + alpha, RGB, RGBA; not interlaced) -> Png, every chunk's CRC checked."""
    expect(data[:8] == b"\x89PNG\r\n\x1a\n", f"{what}: not a PNG (starts {data[:8]!r})")
    pos, idat, text, header = 8, bytearray(), {}, None
    while pos < len(data):
        expect(pos + 8 <= len(data), f"{what}: truncated chunk header")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        expect(len(chunk) == length and len(crc) == 4, f"{what}: truncated {kind!r} chunk")
        expect(struct.unpack(">I", crc)[0] == zlib.crc32(kind + chunk) & 0xFFFFFFFF, f"{what}: bad CRC of {kind!r}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"tEXt":
            key, _, value = chunk.partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"IEND":
            break
        pos += 12 + length
    expect(header is not None, f"{what}: no IHDR")
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    expect(depth == 8 and channels and interlace == 0, f"{what}: unsupported PNG (depth {depth}, colour type "
                                                       f"{colour}, interlace {interlace})")
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    expect(len(raw) == height * (stride + 1), f"{what}: {len(raw)} bytes of image data for {width}x{height}x{channels}")
    pixels, previous = bytearray(), bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            else:
                expect(kind == 0, f"{what}: unknown filter {kind} in row {y}")
        pixels += line
        previous = line
    return Png(width, height, channels, bytes(pixels), text)


def read_png_file(path):
    with open(path, "rb") as f:
        return decode_png(f.read(), path)
