"""What importing the provider's operators adds to a DAG file, beyond ``import airflow.sdk``.

Every DAG file is parsed again and again by the dag processor, so what an operator module imports
at module level is paid on every parse. Each measurement is a fresh interpreter that first does
``import airflow.sdk`` (what every DAG file needs anyway), then times one import statement with
``time.perf_counter`` and reads the resident size (VmRSS) before and after:

* provider: ``from docify_provider.operators.docify import DocifyRunScenarioOperator,
  DocifyStreamScenarioOperator, DocifyUploadFileOperator`` plus the sensor;
* alternative: ``from airflow.providers.http.operators.http import HttpOperator``;
* empty: nothing (the noise floor of the method; every third round only).

The variants are interleaved ``--repeat`` times (default 15) and the medians printed. A last
interpreter lists the modules the provider's import adds, and which of the heavy ones (the HTTP
client, SSE, retries, the provider's wire layer, pendulum) are among them: they belong to task
execution, not to parsing.

    .venv/bin/python benchmarks/bench_import_cost.py [--repeat 15] [--json]

Goal: under 30 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, machine_line

GOAL_MS = 30.0

STATEMENTS = {
    "provider": (
        "from docify_provider.operators.docify import DocifyRunScenarioOperator, DocifyStreamScenarioOperator, "
        "DocifyUploadFileOperator\nfrom docify_provider.sensors.docify import DocifyScenarioSensor"
    ),
    "http": "from airflow.providers.http.operators.http import HttpOperator",
    "empty": "pass",
}
LABELS = {
    "provider": "Docify operators + sensor",
    "http": "HttpOperator (providers-http)",
    "empty": "nothing (noise floor)",
}
#: Modules a DAG file does not need at parse time; the provider must not import them there.
HEAVY = ("httpx", "httpx_sse", "tenacity", "pendulum", "requests", "docify_provider.docify", "docify_provider.hooks")

CHILD = r"""
import json, sys, time
import airflow.sdk
def rss_kb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
before = set(sys.modules)
rss0 = rss_kb()
t0 = time.perf_counter()
exec(compile(sys.argv[1], "<dag file>", "exec"))
seconds = time.perf_counter() - t0
rss1 = rss_kb()
added = sorted(set(sys.modules) - before)
print(json.dumps({"ms": seconds * 1000, "rss_kb": rss1 - rss0, "added": added}))
"""


def measure(statement: str) -> dict[str, Any]:
    """One fresh interpreter (nothing cached from an earlier import): time and resident size of ``statement``."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, statement], capture_output=True, text=True, check=False, timeout=300
    )
    if out.returncode:
        raise SystemExit(f"import failed: {statement}\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def import_time_top(statement: str, top: int = 8) -> list[tuple[str, int]]:
    """``-X importtime`` of ``statement`` after ``import airflow.sdk``: the slowest modules it added (self us)."""
    code = "import airflow.sdk, sys\nsys.stderr.write('--mark--\\n')\n" + statement
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    tail = out.stderr.split("--mark--\n", 1)[-1]
    rows = []
    for line in tail.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us, _cumulative, name = (p.strip() for p in line[len("import time:") :].split("|"))
            if self_us.isdigit():  # skip the header line
                rows.append((name, int(self_us)))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args()

    print(machine_line())
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in STATEMENTS}
    for i in range(args.repeat):  # interleaved, so that drift hits every variant alike
        for name, statement in STATEMENTS.items():
            if name == "empty" and i % 3:  # the noise floor needs fewer samples: a third of the time
                continue
            runs[name].append(measure(statement))
    ms = {name: statistics.median(r["ms"] for r in rs) for name, rs in runs.items()}
    mb = {name: statistics.median(r["rss_kb"] for r in rs) / 1024 for name, rs in runs.items()}
    added = {name: rs[-1]["added"] for name, rs in runs.items()}

    print(f"Import cost in a DAG file after `import airflow.sdk`, median of {args.repeat} fresh interpreters each")
    print(f"{'import':<32}{'time':>10}{'resident':>12}{'modules':>9}")
    for name in STATEMENTS:
        print(f"{LABELS[name]:<32}{ms[name]:>7.1f} ms{mb[name]:>9.1f} MB{len(added[name]):>9}")
    ratio = ms["http"] / max(ms["provider"], 0.1)
    print(f"ratio: importing the Docify operators costs {ratio:.0f}x less time than importing HttpOperator")
    heavy = sorted({m for m in added["provider"] for h in HEAVY if m == h or m.startswith(h + ".")})
    print(f"heavy modules the provider's import adds: {', '.join(heavy) if heavy else 'none'}")
    print("slowest modules it adds (-X importtime, self time):")
    for module, self_us in import_time_top(STATEMENTS["provider"]):
        print(f"  {module:<60}{self_us / 1000:>7.1f} ms")
    print(f"goal: under {GOAL_MS:g} ms: {ms['provider']:.1f} ms -> {'met' if ms['provider'] < GOAL_MS else 'MISSED'}")
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine_info(),
                    "median_ms": ms,
                    "median_rss_mb": mb,
                    "modules_added": {k: len(v) for k, v in added.items()},
                    "heavy_added": heavy,
                    "ratio": ratio,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
