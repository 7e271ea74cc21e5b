"""What the benchmarks share: the machine's load average, printed with every figure (a shared machine); for
memory, this process' RSS and its peak, and one measurement per fresh Python process."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def measure_in_fresh_process(script: str, options: list[str], child: list[str], result: Path) -> dict:
    """Runs ``script options --child child result`` in a fresh Python process and returns the JSON it wrote to
    ``result``: a process of its own, so its peak RSS is of that measurement alone."""
    subprocess.run([sys.executable, script, *options, "--child", *child, str(result)], check=True)
    return json.loads(result.read_text())


def peak_rss_bytes() -> int:
    """This process' peak RSS. On Linux VmHWM, the peak of this program's own memory: ru_maxrss also counts
    the parent's RSS copied at fork, before exec, which here is the parent's TensorFlow and models."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Linux: restart the peak-RSS mark (VmHWM) at the current RSS, so the peak read later is the peak of what
    ran in between, not of importing TensorFlow or loading the model."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False
