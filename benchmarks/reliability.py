"""Reliability figures (issues 15, 26): the hostile corpus, wrong settings generated from the settings schema,
and searches killed with SIGKILL at random moments.

1. Hostile corpus: writes the malformed files of ``tests/test_hostile_corpus.py`` and runs each through every
   subcommand that reads its kind, in this process; counts runs, exit codes and messages that do not name the
   file (a failure is anything but exit 2 with one line naming the file and, where known, the field).
2. Wrong settings (issue 26): every case ``tests/test_settings_schema.py`` generates, as flags and as a config file.
3. kill -9 trials: one uninterrupted IMP search on digits, then ``--trials`` searches each SIGKILLed after a
   random delay (uniform over 5-80 % of the uninterrupted run's wall time, seeded) and resumed with the same command, as
   many times as it takes to finish (each resume is killed again with probability 1/2). A trial passes when
   the final ticket's tensors and masks are byte-identical to the uninterrupted ticket's and the records agree
   except for wall times.

    .venv/bin/python benchmarks/reliability.py [--trials 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("slt-deploy"))


def corpus_figures(workdir: Path) -> dict:
    spec = importlib.util.spec_from_file_location("hostile_corpus", ROOT / "tests" / "test_hostile_corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    sys.modules["hostile_corpus"] = corpus
    spec.loader.exec_module(corpus)
    valid, cases = corpus.build_corpus(workdir)
    runs, failures, by_rc = 0, [], {}
    out = workdir / "out"
    start = time.perf_counter()
    for case in cases:
        for argv in corpus.commands(case, valid, out):  # every subcommand, for every file
            runs += 1
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = corpus.main(argv)
            by_rc[rc] = by_rc.get(rc, 0) + 1
            text = err.getvalue().strip()
            ok = (rc == 2 and "\n" not in text and str(case.path) in text
                  and (not case.field or case.field.lower() in text.lower()) and not out.exists())
            if not ok:
                failures.append(f"{case.kind}/{case.name} [{argv[0]}] rc={rc}: {text[:200]}")
            shutil.rmtree(out, ignore_errors=True)
    return {"files": len(cases), "kinds": sorted({c.kind for c in cases}), "runs": runs,
            "exit_codes": by_rc, "failures": len(failures), "failure_examples": failures[:10],
            "seconds": round(time.perf_counter() - start, 1)}


def settings_figures(workdir: Path) -> dict:
    """Issue 26: the wrong settings ``tests/test_settings_schema.py`` generates from the settings dataclasses,
    each given to ``search`` as flags and as a config file; a failure is anything but exit 2 with one stderr line
    (no traceback, no internal error) and nothing written."""
    spec = importlib.util.spec_from_file_location("settings_schema", ROOT / "tests" / "test_settings_schema.py")
    schema = importlib.util.module_from_spec(spec)
    sys.modules["settings_schema"] = schema
    spec.loader.exec_module(schema)
    workdir.mkdir(parents=True, exist_ok=True)
    out, config = workdir / "runs", workdir / "config.yaml"
    cases = schema.run_cases()
    runs, failures, by_rc = 0, [], {}
    start = time.perf_counter()
    for case, settings, _ in cases:
        config.write_text(schema.yaml.safe_dump(schema._merge(schema.BASE, settings)))
        for argv in (["search", *schema._flags(schema.BASE), *schema._flags(settings)],
                     ["search", "--config", str(config)]):
            runs += 1
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    rc = schema.main([*argv, "--runs-dir", str(out), "--no-progress"])
                except SystemExit as exc:  # argparse's refusals
                    rc = exc.code
            by_rc[rc] = by_rc.get(rc, 0) + 1
            text = err.getvalue()
            if rc != 2 or text.count("\n") != 1 or "internal error" in text or out.exists():
                failures.append(f"{case} rc={rc}: {text.strip()[:200]}")
            shutil.rmtree(out, ignore_errors=True)
    return {"cases": len(cases), "runs": runs, "exit_codes": by_rc, "failures": len(failures),
            "failure_examples": failures[:10], "seconds": round(time.perf_counter() - start, 1)}


def _search_argv(runs_dir: Path) -> list:
    return [EXE, "search", "--runs-dir", str(runs_dir), "--no-progress", "--model", "mlp", "--hidden", "32",
            "--dataset", "digits", "--n-train", "600", "--n-test", "100", "--batch-size", "50",
            "--method", "imp", "--epochs", "3", "--rounds", "2"]


def _fingerprint(ticket_path: Path) -> dict:
    from slt_deploy.ticket import Ticket

    t = Ticket.load(ticket_path)
    record = json.loads(t.record.to_json())
    for volatile in ("wall_time_s", "versions"):
        record.pop(volatile)
    tensors = hashlib.sha256()
    for name in sorted(t.state):
        tensors.update(name.encode() + t.state[name].numpy().tobytes())
    for name in sorted(t.mask):
        tensors.update(name.encode() + t.mask[name].numpy().tobytes())
    return {"tensors": tensors.hexdigest(), "record": record}


def kill_trials(trials: int, seed: int, workdir: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    reference_dir = workdir / "uninterrupted"
    subprocess.run(_search_argv(reference_dir), env=env, check=True, capture_output=True)
    duration = time.perf_counter() - start
    (reference,) = reference_dir.glob("*/ticket.safetensors")
    expected = _fingerprint(reference)
    rng = random.Random(seed)
    results = []
    for trial in range(trials):
        runs = workdir / f"trial_{trial}"
        kills, delays = 0, []
        while True:
            proc = subprocess.Popen(_search_argv(runs), env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            kill_now = kills == 0 or rng.random() < 0.5
            # within the first 80 % of the uninterrupted wall time, so that the kill lands before the run ends
            delay = rng.uniform(0.05, 0.8) * duration if kill_now else None
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                delays.append(round(delay, 2))
                continue
            if proc.returncode != 0:
                results.append({"trial": trial, "kills": kills, "ok": False, "why": f"exit {proc.returncode}"})
                break
            if not list(runs.glob("*/ticket.safetensors")):
                continue  # the run had finished its work exactly as it was killed; run again
            (ticket,) = runs.glob("*/ticket.safetensors")
            same = _fingerprint(ticket) == expected
            results.append({"trial": trial, "kills": kills, "kill_delays_s": delays, "ok": same})
            break
    return {"uninterrupted_s": round(duration, 1), "trials": len(results),
            "trials_killed": sum(r["kills"] > 0 for r in results),
            "identical": sum(r["ok"] for r in results), "kills": sum(r["kills"] for r in results),
            "details": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="slt-reliability-") as tmp:
        figures = {"provenance": provenance("reliability.py", args),
                   "corpus": corpus_figures(Path(tmp) / "corpus"),
                   "settings": settings_figures(Path(tmp) / "settings"),
                   "kill9": kill_trials(args.trials, args.seed, Path(tmp) / "kill") if args.trials else None}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items()}, indent=2)[:4000])


if __name__ == "__main__":
    main()
