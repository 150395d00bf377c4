"""Typed records (slt_deploy.records): every file read back is refused in one line naming the file and field."""

from __future__ import annotations

import json
import os
from typing import List, Literal

import pytest

from slt_deploy.errors import ConfigError
from slt_deploy.records import FileRecord, Record, RunPath, dump_record, load_record, schema_text


class Point(Record):
    accuracy: float
    cost: RunPath


class Front(FileRecord):
    SCHEMA_VERSION = "1"
    schema_version: Literal["1"]
    points: List[Point]


def _write(path, data) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def test_round_trip(tmp_path):
    front = Front(schema_version="1", points=[Point(accuracy=0.5, cost="rounds/1.cost.json")])
    dump_record(front, tmp_path / "front.json")
    assert load_record(tmp_path / "front.json", Front) == front


@pytest.mark.parametrize("data, field", [
    ({"schema_version": "1"}, r"points: Field required"),
    ({"schema_version": "2", "points": []}, r"schema_version: Input should be '1'"),
    ({"schema_version": "1", "points": [{"accuracy": "1", "cost": "a"}]}, r"points\.0\.accuracy"),
    ({"schema_version": "1", "points": [{"accuracy": 1.0, "cost": "/etc/hostname"}]}, r"points\.0\.cost: .*relative"),
    ({"schema_version": "1", "points": [{"accuracy": 1.0, "cost": "../x"}]}, r"points\.0\.cost: .*leaves"),
    ({"schema_version": "1", "points": [], "extra": 1}, r"extra: Extra inputs are not permitted"),
    ('{"schema_version": "1", "points": [{"accuracy": NaN, "cost": "a"}]}', r"NaN"),
    ('{"schema_version": "1", "points": [', r"not valid JSON"),
])
def test_refused_in_one_line(tmp_path, data, field):
    path = tmp_path / "front.json"
    _write(path, data)
    with pytest.raises(ConfigError, match=field) as info:
        load_record(path, Front)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_symlink_leaving_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    _write(outside / "front.json", {"schema_version": "1", "points": []})
    os.symlink(outside / "front.json", run / "front.json")
    with pytest.raises(ConfigError, match="outside"):
        load_record(run / "front.json", Front, root=run)


def test_schema_is_generated_by_pydantic():
    schema = json.loads(schema_text(Front))
    assert schema["required"] == ["schema_version", "points"]
    assert schema["properties"]["schema_version"]["const"] == "1"
