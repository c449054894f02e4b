"""Run every benchmark in turn, each in its own process: ``python -m bench.run_all``
(``make bench``). Tables go to stdout as they come, progress to stderr; a summary of the
targets and of each script's time and exit status comes last. Exits 1 if a script failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

from bench.common import CPU_COUNT, ROOT, die_with_parent, setup

SCRIPTS = ("noop", "highlight", "end_to_end", "web", "backends")
SCRIPT_TIMEOUT = 300.0
# bench.highlight runs three workers at two concurrencies, plus two more rows.
TIMEOUTS = {"highlight": 450.0, "backends": 450.0}


def run_script(name: str, timeout: float) -> tuple[int, float, list[str]]:
    """Run ``python -m bench.NAME``, echoing its stdout; exit code, seconds, stdout lines."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}"], cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, text=True, bufsize=1, preexec_fn=die_with_parent,
    )
    lines: list[str] = []
    timer = threading.Timer(timeout, process.terminate)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rstrip("\n"))
        code = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.terminate()
            process.wait(30)
    return code, time.monotonic() - started, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", metavar="SCRIPT",
                        help=f"which benchmarks, of {', '.join(SCRIPTS)} (default: all)")
    args = parser.parse_args(argv)
    setup("run_all")
    unknown = set(args.scripts) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    load = os.getloadavg()[0]
    print(f"benchmarks on {CPU_COUNT} CPUs (os.cpu_count()), Python {sys.version.split()[0]},"
          f" load average {load:.2f}", flush=True)
    if load > 0.5 * CPU_COUNT:
        print("!! the machine is busy: other processes will skew these figures", flush=True)
    summary: list[str] = []
    targets: list[str] = []
    failed = False
    for name in args.scripts or SCRIPTS:
        print(f"\n##### bench.{name}", flush=True)
        code, seconds, lines = run_script(name, TIMEOUTS.get(name, SCRIPT_TIMEOUT))
        failed = failed or code != 0
        summary.append(f"bench.{name:<11} {'ok' if code == 0 else f'FAILED ({code})':<12}"
                       f" {seconds:6.1f} s")
        targets.extend(line for line in lines if line.startswith("target "))
    print("\n== summary ==", flush=True)
    print("\n".join(targets + [""] + summary), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
