"""A minimal JND service that embeds the runtime: POST an image, get its JND and the JPEG quality to use as JSON.

    python examples/embedded_service.py [MODEL] [--port 8080]
    curl --data-binary @photo.jpg http://127.0.0.1:8080/

Standard library only besides sgjnd: one model opened at start (MODEL: a model directory from `sgjnd export`, a
checkpoint, or nothing for the bundled demo model), one request at a time (http.server's single thread, so the
predictor is never shared between threads). For production use `sgjnd serve` (limits, batching across requests,
metrics); this file shows how little embedding takes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from sgjnd.errors import SgjndError
from sgjnd.runtime import PredictConfig, Predictor, SearchConfig, open_predictor

MAX_BODY = 32 << 20  # bytes; a larger body is refused before it is read


def make_handler(predictor: Predictor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._reply(413 if length else 400, {"error": f"send 1..{MAX_BODY} bytes of an image, got {length}"})
                return
            try:
                result = predictor.predict(self.rfile.read(length), source="upload")
            except SgjndError as exc:
                self._reply(422, {"error": str(exc)})
                return
            self._reply(
                200,
                {
                    "jnd_qf": result.jnd_qf,
                    "recommended_qf": result.recommended_qf,
                    "psnr_db": result.psnr_db,
                    "backend": result.backend,
                },
            )

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model directory or checkpoint (default: the bundled demo model)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    config = PredictConfig(search=SearchConfig(strategy="coarse-to-fine"), max_patches=16)
    with open_predictor(args.model, config=config, announce=lambda line: print(line, file=sys.stderr)) as predictor:
        server = HTTPServer(("127.0.0.1", args.port), make_handler(predictor))
        print(f"serving {predictor.backend} on http://127.0.0.1:{args.port}/", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
