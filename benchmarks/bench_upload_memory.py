"""Peak memory of uploading a 50 MB document: DocifyHook.upload_file vs requests.post(files=...).

Each method runs in a fresh child process: imports and a small warm-up upload first, then the peak
resident memory is reset and the 50 MB upload made; the figure is peak minus the resident size
just before. The emulator runs in a third process so that its memory is not counted.

    .venv/bin/python benchmarks/bench_upload_memory.py [--size-mb 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import emulator_process, machine_info, machine_line, proc_status_kb, reset_peak_rss

KEY = "emulator-bundle-key"


def child(method: str, base_url: str, path: str) -> None:
    if method == "hook":
        os.environ["AIRFLOW_CONN_DOCIFY_BENCH"] = json.dumps({"conn_type": "docify", "host": base_url, "password": KEY})
        from docify_provider.hooks.docify import DocifyHook

        hook = DocifyHook("docify_bench")

        def upload(p: str) -> None:
            hook.upload_file(p)
    else:
        import requests

        def upload(p: str) -> None:
            with open(p, "rb") as fh:
                r = requests.post(
                    base_url + "/v1/file/upload",
                    headers={"Authorization": f"Bearer {KEY}"},
                    files={"file": (os.path.basename(p), fh, "application/pdf")},
                    data={"user": "bench"},
                    timeout=120,
                )
            r.raise_for_status()

    small = path + ".small.pdf"
    with open(small, "wb") as fh:
        fh.write(b"%PDF-1.4 warm-up")
    upload(small)
    before = proc_status_kb("VmRSS")
    reset_peak_rss()
    upload(path)
    peak = proc_status_kb("VmHWM")
    print(
        json.dumps(
            {"method": method, "peak_above_baseline_mb": (peak - before) / 1024, "before_kb": before, "peak_kb": peak}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "BASE_URL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp, emulator_process() as base_url:
        path = os.path.join(tmp, "big_document.pdf")
        with open(path, "wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(1024 * 1024))
        results = {}
        for method in ("hook", "requests"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", method, base_url, path],
                capture_output=True,
                text=True,
                check=True,
            )
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])["peak_above_baseline_mb"]
    print(f"Upload of a {args.size_mb} MB document, peak resident memory above the process baseline")
    print(f"{'method':<34}{'peak above baseline':>22}")
    print(f"{'DocifyHook.upload_file':<34}{results['hook']:>19.2f} MB")
    print(f"{'requests.post(files=...)':<34}{results['requests']:>19.1f} MB")
    ratio = results["requests"] / max(results["hook"], 0.01)
    print(f"ratio: the hook uses {ratio:.0f}x less memory (goal: under 5 MB above baseline)")
    if args.json:
        print(json.dumps({"machine": machine_info(), "peak_above_baseline_mb": results, "ratio": ratio}))


if __name__ == "__main__":
    main()
