"""report.json and deploy.json: one typed, versioned schema, shipped as JSON Schema, read one way; and nothing
outside the schema module reads report or deploy data by string key (an AST scan of the package)."""

from __future__ import annotations

import ast
import json
import math
import subprocess
from pathlib import Path

import pytest

from slt_deploy.records import schema_text
from slt_deploy.report import schema as S

ROOT = Path(__file__).resolve().parents[1]
DEMO_REPORT = ROOT / "benchmarks" / "results" / "verdict_demo" / "report.json"  # the demo's profiles and shape


# -------------------------------------------------------------------------------------------- the schema

@pytest.mark.parametrize("name, model", list(S.SCHEMAS.items()))
def test_shipped_schema_is_the_generated_one(name, model):
    """The JSON Schema files shipped with the package are what the models generate (regenerate with
    ``slt_deploy.report.schema.write_schemas()`` after changing a model)."""
    shipped = S.SCHEMA_DIR / name
    assert shipped.read_text() == schema_text(model)


def test_shipped_schema_is_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"slt_deploy.report" = ["schemas/*.schema.json"]' in text


def _demo_shaped_report(tmp_path: Path) -> Path:
    """The demo's report (benchmarks/verdict_demo: every shipped chip, the ANN targets, NeuroBench, SANA-FE), as
    the benchmark last wrote it with this version, copied so that a test may change it."""
    path = tmp_path / "report.json"
    path.write_text(DEMO_REPORT.read_text())
    return path


def test_demo_report_validates_and_round_trips(tmp_path):
    path = _demo_shaped_report(tmp_path)
    report = S.load_report(path)
    assert {n.label for n in report.networks} >= {"dense SNN"}
    assert {"loihi", "truenorth", "xylo", "dynapcnn", "int8-45nm"} <= set(report.profiles)
    assert report.networks[0].neurobench.version and report.networks[0].sanafe
    # open interval ends are numbers (Infinity), and the file reads back exactly as written
    assert any(math.isinf(r.ratio_interval[1]) for r in report.verdict_matrix)
    assert S.to_json(report) == json.loads(path.read_text())


def test_demo_report_validates_against_the_shipped_json_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((S.SCHEMA_DIR / "report.schema.json").read_text())
    data = json.loads(_demo_shaped_report(tmp_path).read_text())
    jsonschema.validate(data, schema)
    data["networks"][0]["energy"]["loihi"]["total"] = "1 nJ"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


@pytest.mark.parametrize("version", [None, "slt-deploy.report/2"])
def test_an_old_report_is_refused_in_one_line_naming_the_field(tmp_path, version):
    # None: a file written before schema_version existed (it had "format"); /2: before trade-off rows (issue 30)
    data = json.loads(DEMO_REPORT.read_text())
    if version is None:
        data.pop("schema_version")
        data["format"] = "slt-deploy.report/1"
    else:
        data["schema_version"] = version
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    with pytest.raises(S.ReportFileError) as exc:
        S.load_report(path)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message and "schema_version" in message


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(schema_version="slt-deploy.report/1"), "schema_version"),
    (lambda d: d["networks"][0]["energy"]["loihi"].update(total="1 nJ"), "networks.0.energy.loihi.total"),
    (lambda d: d["ann"].update(surprise=1), "ann.surprise"),
    (lambda d: d["verdict"][0].pop("decision"), "verdict.0.decision"),
])
def test_a_foreign_or_damaged_report_is_refused_naming_the_field(tmp_path, change, field):
    path = _demo_shaped_report(tmp_path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(S.ReportFileError, match=rf"^{path}: {field}\b"):
        S.load_report(path)


def test_nan_is_refused_where_infinity_is_allowed(tmp_path):
    path = _demo_shaped_report(tmp_path)
    text = path.read_text()
    path.write_text(text.replace("Infinity", "NaN", 1))
    with pytest.raises(S.ReportFileError, match="NaN is not a number JSON allows"):
        S.load_report(path)


def test_cli_refuses_a_foreign_report_with_exit_2(slt_deploy_exe, cli_env, tmp_path):
    """``slt-deploy inspect`` reads a report.json through the one loader: exit 2, one line, no traceback."""
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"format": "slt-deploy.report/1", "networks": []}))
    proc = subprocess.run([slt_deploy_exe, "inspect", str(path)], capture_output=True, text=True, env=cli_env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "schema_version" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verdict_names_one_thing_in_deploy_json():
    """In deploy.json 'verdict' no longer names the fit sentence: the fit is fit_summary, the verdict's rows are
    verdict_rows / verdict_matrix (their decisions per scope a property, not a second copy in the file)."""
    fields = set(S.DeployData.model_fields)
    assert "verdict" not in fields and {"fit_summary", "verdict_rows"} <= fields and "decisions" not in fields
    assert "verdict" not in S.MappingEntry.model_fields and "fit_summary" in S.MappingEntry.model_fields


# -------------------------------------------------------------------------------- the string-key scan
#
# Report data leaves the report stage only as typed objects: ReportResult.report and DeployResult.record are
# the schema's models (subscripting one by a string raises), neither result offers a dict, and the files are read
# back through load_report / load_deploy. What the scan guards is the old way coming back: a module that builds,
# passes on or reads report data indexing it by the file's keys.

def _report_field_names() -> set:
    """Every field name of the report and deploy models."""
    names = set()
    for obj in vars(S).values():
        if isinstance(obj, type) and issubclass(obj, S.Record) and obj.__module__ == S.__name__:
            names |= set(obj.model_fields)
    return names


def _handles_report_data(path: Path) -> bool:
    text = path.read_text()
    return any(s in text for s in ("slt_deploy.report", "slt_deploy.deploy", "from .report", "api.deploy(",
                                   "api.report("))


# The modules that build, pass on or read report data: the report stages, the deploy driver, and every
# benchmark or example that makes a report or a deployment. The schema module alone knows the file's keys.
SCANNED = sorted(p for p in (ROOT / "slt_deploy" / "report").glob("*.py") if p.name != "schema.py") + [
    ROOT / "slt_deploy" / "deploy.py"] + sorted(p for folder in ("benchmarks", "examples")
                                                for p in (ROOT / folder).glob("*.py") if _handles_report_data(p))

# Keys of another structure that happen to share a report field's name, each with its owner (checked to still
# occur, so the list cannot go stale).
ALLOWED = {
    ("crosscheck.py", "version"): "NeuroBench's result dict (cost.neurobench_metrics)",
    ("crosscheck.py", "metrics"): "NeuroBench's result dict (cost.neurobench_metrics)",
    ("networks.py", "method"): "a NIR graph's metadata",
    ("networks.py", "sparsity"): "a NIR graph's metadata",
    ("networks.py", "accuracy"): "a NIR graph's metadata",
    ("anns.py", "model"): "a ticket's recorded hyperparameters",
    ("entries.py", "figures"): "HardwareProfile.to_dict() (the cost stage's profile)",
    ("entries.py", "mac"): "HardwareProfile.to_dict() figures",
    ("entries.py", "synaptic_op"): "HardwareProfile.to_dict() figures",
    ("deploy.py", "netx"): "the deploy folder's file names (FILES)",
    ("deploy.py", "ann"): "the deploy folder's file names (FILES)",
    ("deploy.py", "summary"): "the deploy folder's file names (FILES)",
    ("deploy.py", "label"): "a front point (front.json)",
    ("deploy.py", "accuracy"): "a front point (front.json)",
    ("deploy.py", "energy_j"): "a front point (front.json) and the cost stage's recost",
    ("deploy.py", "energy_kind"): "a front point (front.json) and the cost stage's recost",
    ("deploy_mnist.py", "accuracy"): "the benchmark's own simulation rows",
    ("deploy_mnist.py", "first_mismatch"): "the benchmark's own simulation rows",
    ("energy_search.py", "energy_j"): "front.json points",
    ("energy_search.py", "energy_kind"): "front.json points",
    ("energy_search.py", "reference_accuracy"): "front.json",
    ("energy_search.py", "energy"): "the benchmark's own facts (the energy search's run)",
}


def string_key_reads(source: str, names: set) -> list:
    """(line, key) of every read ``x["key"]`` and ``x.get("key")`` whose key is one of ``names``, in line order."""
    found = []
    for node in ast.walk(ast.parse(source)):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice,
                                                                                           ast.Constant):
            key = node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant):
            key = node.args[0].value
        if isinstance(key, str) and key in names:
            found.append((node.lineno, node.end_col_offset, key))
    return [(line, key) for line, _, key in sorted(found)]


def test_the_scan_finds_what_it_looks_for():
    """The scan is not vacuous: the old ways of reading report.json are caught, attribute reads and writes of a
    dict being built are not."""
    names = _report_field_names()
    old = ('x = data["networks"][0]["energy"]["loihi"]["total"]\n'
           'y = row.get("best_ann")\nz = report.networks[0].energy["loihi"].total\nentry["decision"] = "SNN"\n')
    assert string_key_reads(old, names) == [(1, "networks"), (1, "energy"), (1, "total"), (2, "best_ann")]
    assert {"networks", "verdict_matrix", "fit_summary", "decision", "break_even", "verdict_rows"} <= names
    assert ROOT / "slt_deploy" / "deploy.py" in SCANNED
    scanned = {p.name for p in SCANNED}
    assert {"own_network.py", "vendor_flows.py", "verdict_demo.py", "report_custom_profile.py"} <= scanned


def test_no_module_reads_report_data_by_string_key():
    names = _report_field_names()
    offenders, used = [], set()
    for path in SCANNED:
        for line, key in string_key_reads(path.read_text(), names):
            if (path.name, key) in ALLOWED:
                used.add((path.name, key))
            else:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: [{key!r}]")
    assert not offenders, "report data read by string key (read the typed objects of slt_deploy.report.schema):\n" \
        + "\n".join(offenders)
    assert used == set(ALLOWED), f"allowed keys no longer read (remove them): {sorted(set(ALLOWED) - used)}"


def test_results_hand_out_typed_data_only():
    from slt_deploy.deploy import DeployResult
    from slt_deploy.report import ReportResult

    assert not hasattr(ReportResult, "data") and not hasattr(DeployResult, "data")
    assert ReportResult.__dataclass_fields__["report"].type in ("ReportData", S.ReportData)
