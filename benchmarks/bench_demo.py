"""Time the browser demo as a user meets it: the page's start, and `/translate` calls over HTTP.

Builds the page for the demo checkpoint (phantom examples in a fresh cache folder, so their first-start rendering
is counted), serves it on a free local port and calls `/translate` with gradio_client on a phantom DICOM at the
model's defaults (τ, guidance, 50 steps, 512 px processing), a few times.

Usage:
    python benchmarks/bench_demo.py               # 3 calls
    python benchmarks/bench_demo.py --calls 5 --model user/medshift-xdigiskull
    python benchmarks/bench_demo.py --threads 1   # torch threads; on a busy machine one thread is much faster
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--model", default=None, help="folder or Hub id (default: $MEDSHIFT_MODEL, else the demo checkpoint)")
    args = parser.parse_args()

    start = time.perf_counter()
    from gradio_client import Client, handle_file

    from medshift.demo_app import build_demo, default_model, launch_demo, phantom_examples

    imported = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        demo = build_demo(args.model or default_model(), examples_dir=cache)
        built = time.perf_counter()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        launch_demo(demo, port=port, prevent_thread_lock=True, quiet=True)
        served = time.perf_counter()
        print(f"imports {imported - start:.1f} s, model + phantom examples {built - imported:.1f} s, "
              f"serving {served - built:.1f} s: page up {served - start:.1f} s after start")

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        dicom = str(phantom_examples(cache)[-1])
        seconds = []
        for _ in range(args.calls):
            tick = time.perf_counter()
            client.predict(handle_file(dicom), "real_normal", 0.45, api_name="/translate")
            seconds.append(time.perf_counter() - tick)
        import torch

        print(f"/translate ({torch.get_num_threads()} torch threads, 780x780 DICOM, tau 0.45, model defaults) over HTTP: "
              + ", ".join(f"{s:.2f}" for s in seconds) + f" s; median {statistics.median(seconds):.2f} s")
        demo.close()


if __name__ == "__main__":
    main()
