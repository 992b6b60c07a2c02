#!/usr/bin/env python3
"""ilf_serve through the official `openai` Python client: the point of speaking OpenAI's images API is
that its clients work unchanged, and only a real client shows that (its request headers, the body it
builds from keyword arguments and extra_body, how it parses the answer and maps errors to exceptions).
The built server runs the embedded class-to-image model with an API key; the client generates an
image with our fields in extra_body, which must equal the same request made over plain HTTP, lists the
models, and sees a bad field and a wrong key as BadRequestError (with the field as param) and
AuthenticationError.

    python3 tests/serve/openai_client_test.py --build BUILD_DIR --source SOURCE_DIR

The openai package is installed in CI's pip-torch environment (scripts/ci/serve_check_requirements.txt);
where it cannot be imported (the Debian stage) the test exits 77, which ctest reports as skipped.
"""
import argparse
import base64
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import Server, TestFailure, decode_png, expect, images_of  # noqa: E402

SKIP = 77


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()
    try:
        import openai
    except ImportError as e:
        print(f"SKIPPED: the openai package cannot be imported ({e}); CI's pip-torch stage has it")
        return SKIP
    build, source = os.path.abspath(args.build), os.path.abspath(args.source)
    serve = os.path.join(build, "ilf_serve")
    if not os.access(serve, os.X_OK):
        print(f"FAILED: {serve} is not there (build it first)")
        return 1
    work = tempfile.mkdtemp(prefix="ilf-openai-test-")
    key_file = os.path.join(work, "key.txt")
    with open(key_file, "w") as f:
        f.write("x\n")
    server = Server([serve, "--config", "configs/fashion_mnist.json", "--port", "0", "--api-key-file", key_file],
                    source, os.path.join(work, "serve.log"), api_key="x")
    try:
        server.start()
        base_url = f"http://127.0.0.1:{server.port}/v1"
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120)
        print(f"openai {openai.__version__} against {base_url}")

        models = [m.id for m in client.models.list()]
        expect(models, "client.models.list() is empty")
        model = models[0]

        result = client.images.generate(model=model, prompt="sneaker", n=1, size="32x32", response_format="b64_json",
                                        extra_body={"seed": 1, "steps": 10})
        expect(len(result.data) == 1 and result.data[0].b64_json, f"images.generate: {result}")
        expect(isinstance(result.created, int) and result.created > 0, f"created: {result.created}")
        png = decode_png(base64.b64decode(result.data[0].b64_json), "the client's image")
        expect((png.width, png.height) == (32, 32), f"a {png.width}x{png.height} image, expected 32x32")
        expect(png.settings().get("steps") == 10, f"the image's settings: {png.settings()}")
        plain = server.generate({"model": model, "prompt": "sneaker", "n": 1, "size": "32x32",
                                 "response_format": "b64_json", "seed": 1, "steps": 10})
        expect(images_of(plain, 1)[0].pixels == png.pixels, "the client's image differs from the same request over HTTP")
        ilf = (result.model_extra or {}).get("ilf")  # our fields beside OpenAI's survive the client's model
        expect(isinstance(ilf, dict) and ilf.get("seeds") == [1], f"the answer's \"ilf\" through the client: {ilf}")

        try:
            client.images.generate(model=model, prompt="sneaker", n=1, size="32x32", response_format="b64_json",
                                   extra_body={"steps": 100000})
            raise TestFailure("steps 100000 was accepted")
        except openai.BadRequestError as e:
            param = (e.body or {}).get("param") if isinstance(e.body, dict) else None
            expect(e.status_code == 400 and param == "steps", f"steps 100000: HTTP {e.status_code}, param {param!r}")

        wrong = openai.OpenAI(base_url=base_url, api_key="not-the-key", max_retries=0, timeout=30)
        try:
            wrong.images.generate(model=model, prompt="sneaker", n=1, size="32x32", response_format="b64_json")
            raise TestFailure("a wrong API key was accepted")
        except openai.AuthenticationError as e:
            expect(e.status_code == 401, f"a wrong key: HTTP {e.status_code}")
        expect(server.stop() == 0, f"ilf_serve's exit status after SIGTERM:\n{server.log_tail()}")
    except Exception as e:
        print(f"FAILED: {e}")
        print(server.log_tail())
        return 1
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
