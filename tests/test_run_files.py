"""The files of a run directory (slt_deploy.run_files, issue 32): what is written is what is read, every problem
is one line naming the file and the field, one range per setting at every door, and a search killed during its
front update resumes to the same front and ticket, byte for byte."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from pathlib import Path

import pytest
import torch

from slt_deploy.cli import main
from slt_deploy.config import SEED_MAX, SearchConfig, check_setting
from slt_deploy.cost.activity import LayerActivity
from slt_deploy.errors import ConfigError, RunDirError
from slt_deploy.paths import RunPaths
from slt_deploy.records import Record, dump_records, load_records
from slt_deploy.run_files import CostFile, LayerCounts, LogLine, load_front, load_log, write_cost, write_log
from slt_deploy.ticket import Ticket

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile_corpus import RUN_FLAGS, build_run_dir, kill_during_front_update  # noqa: E402  the corpus' tiny run


def test_layer_counts_are_the_cost_stages_layer_activity():
    """A cost file's layers are read back into LayerActivity (cost.objective.activity_of): the same fields, types
    and defaults in both (the record lives below the cost stage, which the search may not import)."""
    hints = typing.get_type_hints(LayerActivity)
    fields = {f.name: (hints[f.name], f.default) for f in dataclasses.fields(LayerActivity)}
    record = {name: (info.annotation, info.default) for name, info in LayerCounts.model_fields.items()}
    assert list(record) == list(fields)
    for name, (hint, default) in fields.items():
        annotation, record_default = record[name]
        assert annotation is hint or typing.get_args(annotation)[0] is hint, name
        assert default is dataclasses.MISSING or record_default == default, name


class Line(Record):
    n: int
    x: float


def test_json_lines_round_trip_and_name_the_line(tmp_path):
    path = tmp_path / "log.jsonl"
    dump_records([Line(n=1, x=0.5), Line(n=2, x=1.0)], path)
    assert path.read_text() == '{"n": 1, "x": 0.5}\n{"n": 2, "x": 1.0}\n'
    assert load_records(path, Line) == [Line(n=1, x=0.5), Line(n=2, x=1.0)]
    for text, message in (('{"n": 1, "x": 0.5}\n{"n": "2", "x": 1.0}\n', r"log.jsonl: line 2: n: .*integer"),
                          ('{"n": 1, "x": NaN}\n', r"line 1: NaN"),
                          ('{"n": 1, "x": 0.5}\n{"n": 2, "x"\n', r"line 2: not valid JSON"),
                          ('\n{"n": 1, "x": 0.5}\n', r"line 1: an empty line")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message) as info:
            load_records(path, Line)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def _cost_entry(**change) -> dict:
    layer = {f.name: (1 if f.type in ("int", int) else True if f.type in ("bool", bool) else
                      "fc1" if f.type in ("str", str) else 1.0) for f in dataclasses.fields(LayerActivity)}
    entry = {"timesteps": 4, "spikes": 1.0, "synops": 2.0, "acs": 1.0, "macs": 1.0, "neuron_updates": 3.0,
             "energy_j": 1e-9, "energy_kind": "exact", "energy_components": {"synaptic_op": 1e-9}, "profile": "cmos45",
             "host": "cmos45", "host_first_layer": True, "layers": [layer], "source": "snntorch", "counted_samples": 10,
             "accuracy": 0.5, "samples": 10, "seconds": 0.1}
    entry.update(change)
    return entry


def test_a_cost_file_is_written_only_as_it_can_be_read(tmp_path):
    """The writer validates with the reader's model: a value the reader would refuse is refused before any byte is
    written (a NaN energy would otherwise make deploy choose another ticket without an error)."""
    path = tmp_path / "rounds" / "round_00_T4.cost.json"
    record = write_cost(path, _cost_entry(t_early=3))
    assert CostFile.model_validate_json(path.read_text()) == record and record.t_early == 3
    assert "t_early" not in json.loads(write_cost(path, _cost_entry()).model_dump_json(exclude_none=True))
    path.unlink()
    for change, field in (({"energy_j": math.nan}, "energy_j"), ({"accuracy": 1.5}, "accuracy"),
                          ({"t_early": 9}, "t_early"), ({"layers": []}, "layers"), ({"macs": -1.0}, "macs")):
        with pytest.raises(RunDirError, match=field):
            write_cost(path, _cost_entry(**change))
        assert not path.exists()


def test_the_log_is_rewritten_only_when_it_changes(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [{"label": "round 0", "seconds": 1.0, "accuracy": None}, {"label": "round 1", "seconds": 2.0}]
    write_log(path, lines)
    assert [l.label for l in load_log(path)] == ["round 0", "round 1"]
    found = [l.model_dump(exclude_none=True) for l in load_log(path)]
    path.write_text(path.read_text() + "")  # the same bytes
    mtime = path.stat().st_mtime_ns
    write_log(path, lines[:1], unless=found)  # a resumed run replaying round 0: nothing to write
    assert path.stat().st_mtime_ns == mtime and len(load_log(path)) == 2
    write_log(path, [lines[0], {"label": "round 1 again", "seconds": 2.0}], unless=found)
    assert [l.label for l in load_log(path)] == ["round 0", "round 1 again"]
    with pytest.raises(RunDirError, match="line 1: colour"):
        write_log(path, [{"label": "x", "seconds": 1.0, "colour": "red"}])
    assert LogLine.model_fields.keys() >= {"holdout_accuracy", "drawn_epoch", "t_early"}


@pytest.mark.parametrize("value, message", [
    (math.nan, "not a valid float"), (math.inf, "not a valid float"), ("-inf", "not a valid float"),
    (-0.5, "must be >= 0"), ("much", "not a valid float")])
def test_one_range_for_the_accuracy_drop_at_every_door(value, message):
    """deploy's --max-accuracy-drop (flag and API) is the search setting's range, checked by its definition."""
    with pytest.raises(ConfigError, match=message):
        check_setting(SearchConfig, "max_accuracy_drop", value, "--max-accuracy-drop")
    assert check_setting(SearchConfig, "max_accuracy_drop", "2.5", "x") == 2.5


def test_the_seed_range_is_the_tickets():
    assert SearchConfig(seed=SEED_MAX).seed == SEED_MAX
    for seed in (SEED_MAX + 1, 10 ** 23, -1):
        with pytest.raises(ConfigError, match=r"seed=.* must be in 0..2\*\*63-1"):
            SearchConfig(seed=seed)


# ------------------------------------------------------------------------------ kill -9 during a front update

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return build_run_dir(tmp_path_factory.mktemp("uninterrupted"))


@pytest.mark.parametrize("mode", ["before", "during"])  # and "after": benchmarks/reliability.py
def test_kill_during_the_front_update_resumes_to_the_same_front_and_ticket(mode, uninterrupted, tmp_path, cli_env,
                                                                           capsys):
    runs, expected = tmp_path / "runs", tmp_path / "front.expected.json"
    killed = kill_during_front_update(mode, runs, expected, cli_env)
    assert killed.returncode == -9, killed.stderr
    (run,) = runs.iterdir()
    paths = RunPaths(run)
    assert paths.front.exists() == (mode == "after") and not paths.ticket.exists()
    assert len(list(run.glob(".front.json.*.tmp"))) == (mode == "during")
    assert main(["search", *RUN_FLAGS, "--runs-dir", str(runs), "--no-progress"]) == 0  # resumed, in process
    out = capsys.readouterr().out
    assert "resuming" in out and "round_01: resuming" not in out  # nothing trained again
    # the same front, byte for byte, as the killed run was writing; the ticket is the chosen round's file
    assert paths.front.read_bytes() == expected.read_bytes()
    front, _ = load_front(run)
    assert paths.ticket.read_bytes() == (run / front.chosen.ticket).read_bytes()
    # and the same front and ticket as a run never killed (its measuring time aside)
    reference, _ = load_front(uninterrupted)
    strip = lambda f: f.model_dump(exclude={"measure_seconds"})  # noqa: E731
    assert strip(front) == strip(reference)
    a, b = Ticket.load(paths.ticket), Ticket.load(RunPaths(uninterrupted).ticket)
    assert sorted(a.state) == sorted(b.state) and all(a.state[k].equal(b.state[k]) for k in a.state)
    assert all(a.mask[k].equal(b.mask[k]) for k in a.mask)


def test_the_early_bird_state_in_a_checkpoint_is_typed():
    from slt_deploy.search.early_bird import EarlyBirdWatch

    watch = EarlyBirdWatch(lambda m: m, ["fc1"], 0.5, "global", 3, 0.1)
    watch.load({"distances": [None, 0.25], "drawn_epoch": None, "fifo": 1}, {"fifo0/fc1": torch.ones(2, 2).bool()})
    assert watch.distances == [None, 0.25] and len(watch.fifo) == 1
    for meta, tensors, field in (({"fifo": "two"}, {}, "fifo"), ({"fifo": 2}, {"fifo0/fc1": torch.ones(1)}, "fifo1"),
                                 ({"distances": [math.nan]}, {}, "distances"), ({"colour": 1}, {}, "colour")):
        with pytest.raises(RunDirError, match=f"callback: .*{field}"):
            watch.load(meta, tensors)
