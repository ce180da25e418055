"""``make stress-test``: the whole suite several times in a row, then every
test that failed at least once (not part of CI: it makes flakiness visible).

    python -m tests.stress_runs [--runs 5] [--out stress-results] [PYTEST_ARGS...]

Each run is a fresh ``pytest`` process writing a JUnit XML report
(``OUT/run-N.xml``, its output in ``OUT/run-N.log``); the summary (also in
``OUT/summary.txt``) counts the runs that passed and lists each test that
failed or errored with the runs it failed in and its first message line.
A run that outlives ``--run-timeout`` is killed (its whole process group)
and counts as failed. Exit 0 only when every run passed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(n: int, out: str, pytest_args: list[str], timeout: float) -> tuple[int | None, float]:
    """One pytest run; its exit status (None: killed at the timeout) and how long it took."""
    xml, log = os.path.join(out, f"run-{n}.xml"), os.path.join(out, f"run-{n}.log")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", f"--junitxml={xml}",
           *pytest_args]
    started = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    return code, time.monotonic() - started


def failures(xml: str) -> dict[str, str]:
    """Test id -> first line of its failure or error, from a JUnit XML report."""
    out: dict[str, str] = {}
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return out
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            node = case.find(kind)
            if node is not None:
                name = f"{case.get('classname', '')}::{case.get('name', '')}"
                message = (node.get("message") or node.text or kind).strip().splitlines()
                out[name] = f"{kind}: {message[0][:200] if message else ''}"
                break
    return out


def summarise(results: list[tuple[int | None, float, dict[str, str]]]) -> str:
    runs = len(results)
    passed = sum(1 for code, _, failed in results if code == 0 and not failed)
    lines = [f"{passed} of {runs} runs passed"]
    for n, (code, took, failed) in enumerate(results, 1):
        status = "killed at the timeout" if code is None else f"exit {code}"
        lines.append(f"  run {n}: {status}, {took:.0f} s, {len(failed)} failed")
    by_test: dict[str, list[tuple[int, str]]] = {}
    for n, (_, _, failed) in enumerate(results, 1):
        for name, message in failed.items():
            by_test.setdefault(name, []).append((n, message))
    if by_test:
        lines.append(f"{len(by_test)} tests failed at least once:")
        for name, seen in sorted(by_test.items(), key=lambda item: (-len(item[1]), item[0])):
            lines.append(f"  {name}: failed in run(s) {', '.join(str(n) for n, _ in seen)} of {runs}")
            lines.append(f"      {seen[0][1]}")
    else:
        lines.append("no test failed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(REPO, "stress-results"))
    ap.add_argument("--run-timeout", type=float, default=3 * 3600, help="seconds one run may take")
    args, pytest_args = ap.parse_known_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for n in range(1, args.runs + 1):
        code, took = run_once(n, args.out, pytest_args or ["tests"], args.run_timeout)
        failed = failures(os.path.join(args.out, f"run-{n}.xml"))
        if code not in (0, None) and not failed:
            failed = {f"run {n}": f"pytest exit {code} without a failed test (see run-{n}.log)"}
        if code is None:
            failed.setdefault(f"run {n}", f"killed after {args.run_timeout:.0f} s (see run-{n}.log)")
        results.append((code, took, failed))
        print(f"run {n}/{args.runs}: {'passed' if code == 0 and not failed else 'FAILED'} in {took:.0f} s"
              + (f" ({len(failed)} failed)" if failed else ""), flush=True)
    summary = summarise(results)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(summary + "\n")
    print(summary)
    return 0 if all(code == 0 and not failed for code, _, failed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
