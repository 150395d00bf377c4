"""Reliability figures (issues 15, 26): the hostile corpus, wrong settings generated from the settings schema,
and searches killed with SIGKILL at random moments.

1. Hostile corpus: writes the malformed files of ``tests/test_hostile_corpus.py`` and runs each through every
   subcommand that reads its kind, in this process; counts runs, exit codes and messages that do not name the
   file (a failure is anything but exit 2 with one line naming the file and, where known, the field).
2. Wrong settings (issue 26): every case ``tests/test_settings_schema.py`` generates, as flags and as a config file.
3. Damaged run directories (issue 32): every file of a finished energy search (front.json, cost files,
   config.json, log.jsonl, phase markers, rewind state, tickets) damaged every way, through deploy, inspect, the
   resumed search and a sweep; and every float flag of every subcommand given nan, inf and text.
4. kill -9 during a front update (issue 32): the energy search killed before, during and after its front.json
   write, resumed; the front and the ticket must come back byte for byte.
5. kill -9 trials: one uninterrupted IMP search on digits, then ``--trials`` searches each SIGKILLed after a
   random delay (uniform over 5-80 % of the uninterrupted run's wall time, seeded) and resumed with the same command, as
   many times as it takes to finish (each resume is killed again with probability 1/2). A trial passes when
   the final ticket's tensors and masks are byte-identical to the uninterrupted ticket's and the records agree
   except for wall times.

    .venv/bin/python benchmarks/reliability.py [--trials 10] [--front-trials 2] [--only run_dirs ...] [--out DIR]
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


def _corpus_module():
    if "hostile_corpus" not in sys.modules:
        spec = importlib.util.spec_from_file_location("hostile_corpus", ROOT / "tests" / "test_hostile_corpus.py")
        corpus = importlib.util.module_from_spec(spec)
        sys.modules["hostile_corpus"] = corpus
        spec.loader.exec_module(corpus)
    return sys.modules["hostile_corpus"]


def _outcome(rc: int, err: str) -> str:
    """What kind of outcome a refused-or-not run had: refused (exit 2, one line), traceback, internal error,
    silent acceptance (exit 0), or other."""
    if "Traceback" in err:
        return "traceback"
    if "internal error" in err:
        return "internal error"
    if rc == 0:
        return "silent acceptance"
    return "refused" if rc == 2 and err.strip().count("\n") == 0 else "other"


def corpus_figures(workdir: Path) -> dict:
    corpus = _corpus_module()
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


def _settings_module():
    if "settings_schema" not in sys.modules:
        _corpus_module()  # the settings test loads the corpus' helpers under this name
        spec = importlib.util.spec_from_file_location("settings_schema", ROOT / "tests" / "test_settings_schema.py")
        schema = importlib.util.module_from_spec(spec)
        sys.modules["settings_schema"] = schema
        spec.loader.exec_module(schema)
    return sys.modules["settings_schema"]


def settings_figures(workdir: Path) -> dict:
    """Issue 26: the wrong settings ``tests/test_settings_schema.py`` generates from the settings dataclasses,
    each given to ``search`` as flags and as a config file; a failure is anything but exit 2 with one stderr line
    (no traceback, no internal error) and nothing written."""
    schema = _settings_module()
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


def run_dir_figures(workdir: Path) -> dict:
    """Issue 32: the damaged run directories of ``tests/test_hostile_corpus.py`` (every file of a finished energy
    search damaged every way) through deploy, inspect, the resumed search and a sweep, in this process. A failure
    is anything but exit 2 with one line naming the file (and field), the run directory unchanged, nothing
    written."""
    corpus = _corpus_module()
    start = time.perf_counter()
    valid = corpus.build_run_dir(workdir / "valid")
    cases = corpus.run_dir_cases(valid, workdir / "cases")
    runs, failures, by_rc, kinds, by_reader = 0, [], {}, {}, {}
    for case in cases:
        out = case.run_dir.parents[1] / "out"
        before = corpus._tree(case.run_dir)
        for argv in corpus.run_dir_commands(case, out):
            runs += 1
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = corpus.main(argv)
            by_rc[rc] = by_rc.get(rc, 0) + 1
            kind = _outcome(rc, err.getvalue())
            kinds[kind] = kinds.get(kind, 0) + 1
            reader = by_reader.setdefault({"search": "resume"}.get(argv[0], argv[0]), {})
            reader[kind] = reader.get(kind, 0) + 1
            problem = corpus.run_dir_outcome(case, argv, rc, err.getvalue(), before, out)
            if problem:
                failures.append(f"{case.name} [{argv[0]}] {problem}: {err.getvalue().strip()[:200]}")
            shutil.rmtree(out, ignore_errors=True)
    return {"cases": len(cases), "files": sorted({c.file for c in cases}), "runs": runs, "exit_codes": by_rc,
            "outcomes": kinds, "by_reader": by_reader, "failures": len(failures),
            "failure_examples": failures[:10], "seconds": round(time.perf_counter() - start, 1)}


def float_flag_figures(workdir: Path) -> dict:
    """Issue 32: nan, inf, -inf and text for every float flag of every subcommand (found in the parser), and a
    negative --max-accuracy-drop; as ``tests/test_settings_schema.py`` runs them."""
    schema = _settings_module()
    corpus = _corpus_module()
    valid = corpus.valid_artifacts(workdir / "valid")
    out = workdir / "out"
    runs, failures, kinds = 0, [], {}
    flags = schema.float_flags()
    for command, flag in flags:
        base = schema._float_flag_base(command, valid, str(out))
        for value in ("nan", "inf", "-inf", "NaN", "much") + (("-1",) if flag == "--max-accuracy-drop" else ()):
            runs += 1
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    rc = schema.main([*base, flag, value])
                except SystemExit as exc:
                    rc = exc.code
            kind = _outcome(rc, err.getvalue())
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind != "refused" or out.exists():
                failures.append(f"{command} {flag} {value}: rc={rc}: {err.getvalue().strip()[:200]}")
            shutil.rmtree(out, ignore_errors=True)
    return {"flags": [f"{c} {f}" for c, f in flags], "runs": runs, "outcomes": kinds, "failures": len(failures),
            "failure_examples": failures[:10]}


def front_kill_trials(trials: int, workdir: Path) -> dict:
    """Issue 32: the corpus' energy search SIGKILLed at its front update (before front.json is written, half-way
    through its temporary file, after it but before the ticket), ``trials`` times each, then resumed with the same
    command. A trial passes when the resumed front.json is byte-identical to the one the killed run was writing,
    the final ticket is byte-identical to the chosen round's, and front and ticket tensors equal an uninterrupted
    run's (its measuring time aside)."""
    corpus = _corpus_module()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    reference = corpus.build_run_dir(workdir / "uninterrupted")
    ref_front = json.loads((reference / "front.json").read_text())
    ref_front.pop("measure_seconds")
    ref_tensors = _fingerprint(reference / "ticket.safetensors")["tensors"]
    results = []
    for mode in ("before", "during", "after"):
        for trial in range(trials):
            runs, expected = workdir / f"{mode}_{trial}" / "runs", workdir / f"{mode}_{trial}" / "front.expected.json"
            killed = corpus.kill_during_front_update(mode, runs, expected, env)
            (run,) = runs.iterdir()
            resumed = subprocess.run([EXE, "search", *corpus.RUN_FLAGS, "--runs-dir", str(runs), "--no-progress"],
                                     env=env, capture_output=True, text=True)
            front_bytes = (run / "front.json").read_bytes() if (run / "front.json").exists() else b""
            front = json.loads(front_bytes or b"{}")
            chosen = run / front.get("chosen", {}).get("ticket", "missing")
            same_front = front_bytes == expected.read_bytes()
            same_ticket = chosen.is_file() and (run / "ticket.safetensors").read_bytes() == chosen.read_bytes()
            front.pop("measure_seconds", None)
            as_uninterrupted = front == ref_front and _fingerprint(run / "ticket.safetensors")["tensors"] == ref_tensors
            results.append({"mode": mode, "killed_rc": killed.returncode, "resumed_rc": resumed.returncode,
                            "front_bytes_identical": same_front, "ticket_bytes_identical": same_ticket,
                            "as_uninterrupted": as_uninterrupted,
                            "ok": killed.returncode == -9 and resumed.returncode == 0 and same_front and same_ticket
                            and as_uninterrupted})
    return {"trials": len(results), "identical": sum(r["ok"] for r in results),
            "by_mode": {m: sum(r["ok"] for r in results if r["mode"] == m) for m in ("before", "during", "after")},
            "details": results}


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


PARTS = ("corpus", "run_dirs", "settings", "float_flags", "kill9", "front_kill9")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--front-trials", type=int, default=2, help="kill -9 trials per front-update moment")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="slt-reliability-") as tmp:
        tmp = Path(tmp)
        run = {"corpus": lambda: corpus_figures(tmp / "corpus"),
               "run_dirs": lambda: run_dir_figures(tmp / "run_dirs"),
               "settings": lambda: settings_figures(tmp / "settings"),
               "float_flags": lambda: float_flag_figures(tmp / "float_flags"),
               "kill9": lambda: kill_trials(args.trials, args.seed, tmp / "kill") if args.trials else None,
               "front_kill9": lambda: front_kill_trials(args.front_trials, tmp / "front_kill")}
        figures = {"provenance": provenance("reliability.py", args), **{part: run[part]() for part in args.only}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items()}, indent=2)[:4000])


if __name__ == "__main__":
    main()
