"""Shared helpers for the benchmark scripts: an emulator in its own process, memory readings."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: A Docify emulator that answers every request ``latency`` seconds late (argv: port, latency), as a
#: service across a network would: the emulator's ``latency`` fault on every endpoint.
_DISTANT_EMULATOR = """
import signal, sys, threading
from docify_provider.testing import DocifyEmulator
from docify_provider.testing.faults import Fault
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
with DocifyEmulator(port=int(sys.argv[1])) as emu:
    emu.inject(Fault("*", "latency", times=None, seconds=float(sys.argv[2])))
    done.wait()
"""


@contextlib.contextmanager
def emulator_process(*args: str, api_path: str = "/docify", latency: float = 0.0) -> Iterator[str]:
    """Run ``python -m docify_provider.testing`` in a child process (so its memory and CPU are not
    ours); yields its base URL, ``api_path`` (``/v1`` for ``--mode dify``) after the host.

    ``latency`` (seconds, Docify only): every answer comes that much later, like a distant service's.
    """
    port = free_port()
    command = [sys.executable, "-m", "docify_provider.testing", "--port", str(port), *args]
    if latency:
        command = [sys.executable, "-c", _DISTANT_EMULATOR, str(port), str(latency)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}{api_path}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/_emulator/counters", timeout=1)  # every mode serves it
                break
            time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(10)


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS: resident now, VmHWM: peak resident)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Make VmHWM start again from the current resident size (Linux >= 4.0)."""
    with open(f"/proc/{os.getpid()}/clear_refs", "w") as fh:
        fh.write("5")


def machine_info() -> dict[str, str | int]:
    """CPU model, cores, Python and Airflow versions: printed with every figure so that it can be compared."""
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        from importlib.metadata import version

        airflow_version = version("apache-airflow")
    except Exception:  # not installed: the figure is still worth printing
        airflow_version = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "airflow": airflow_version,
        "load_1min": f"{os.getloadavg()[0]:.2f}",
    }


def machine_line() -> str:
    """One line describing the machine; the 1-minute load says how noisy the run was."""
    m = machine_info()
    return (
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Airflow {m['airflow']} "
        f"(load average {m['load_1min']} at start)"
    )


def proc_status_kb_of(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in kB, for a child process."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` in kB: Rss, Pss, Private_* (USS = Private_Clean + Private_Dirty)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                out[parts[0][:-1]] = int(parts[1])
    out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def raise_nofile_limit() -> None:
    """Raise this process's open-file limit to its hard limit (a socket per stream: thousands)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
