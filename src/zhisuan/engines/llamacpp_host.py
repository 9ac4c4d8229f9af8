"""Runs llama.cpp's HTTP server (from the prebuilt ``xllamacpp`` wheel) with llama-server's flags.

    python -m zhisuan.engines.llamacpp_host --model m.gguf --alias NAME --host 127.0.0.1 --port 8080

Only the flags the llama.cpp profile emits are understood. The C++ server runs on its own threads;
this process just keeps it alive until SIGTERM/SIGINT. Like llama-server, it takes its API key
from ``LLAMA_API_KEY`` (never from argv, which ``ps`` shows).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="zhisuan.engines.llamacpp_host")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--ctx-size", type=int, default=4096)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--embeddings", action="store_true")
    p.add_argument("--pooling", choices=("none", "mean", "cls", "last", "rank"), default=None)
    p.add_argument("--cors-origins", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    import xllamacpp  # type: ignore[import-not-found]

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.hostnames = [args.host]
    params.port = args.port
    params.endpoint_metrics = True
    if args.alias:
        params.model_alias = {args.alias}
    if args.threads:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    if args.embeddings:
        params.embedding = True
    if args.cors_origins is not None:
        params.cors_origins = args.cors_origins
        params.cors_origins_explicit = True
    api_key = os.environ.pop("LLAMA_API_KEY", "")
    if api_key:
        params.api_keys = [api_key]
    if args.pooling:
        params.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{args.pooling.upper()}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"llamacpp_host listening on {server.listening_address}", flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
