"""The package layout is the pipeline: imports only point down it, and no module imports itself in a circle.

Every import in the package counts, module-level and function-level alike (a lazy import that points up the
pipeline is still a dependency on a later stage). Stages, in pipeline order:

foundation (errors, utils, config, paths) -> data -> models -> ticket -> search -> export -> compile ->
simulate -> cost -> report -> the commands that drive the whole pipeline (cli, demo, sweep, describe).

The netx writer lives in the top-level ``exporters/`` folder but writes the *compiled* network, so it belongs
to the compile stage.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAGES = ["foundation", "data", "models", "ticket", "search", "export", "compile", "simulate", "cost", "report",
          "driver"]

# first matching prefix wins (most specific first)
STAGE_OF = [
    ("slt_deploy.exporters.netx_format", "compile"),
    ("slt_deploy.exporters", "export"),
    ("slt_deploy.export", "export"),
    ("slt_deploy.data", "data"),
    ("slt_deploy.models", "models"),
    ("slt_deploy.ticket", "ticket"),
    ("slt_deploy.search", "search"),
    ("slt_deploy.compile", "compile"),
    ("slt_deploy.simulate", "simulate"),
    ("slt_deploy.cost", "cost"),
    ("slt_deploy.hardware_profiles", "cost"),
    ("slt_deploy.report", "report"),
    ("slt_deploy.errors", "foundation"),
    ("slt_deploy.utils", "foundation"),
    ("slt_deploy.config", "foundation"),
    ("slt_deploy.paths", "foundation"),
    ("slt_deploy.run_files", "foundation"),
    ("slt_deploy.limits", "foundation"),
    ("slt_deploy.yamlio", "foundation"),
    ("slt_deploy.records", "foundation"),
    ("slt_deploy.threads", "foundation"),
    ("slt_deploy.timing", "foundation"),
    ("slt_deploy.cli", "driver"),
    ("slt_deploy.demo", "driver"),
    ("slt_deploy.sweep", "driver"),  # a package: settings, expansion, driver, executors, aggregate...
    ("slt_deploy.describe", "driver"),
    ("slt_deploy.deploy", "driver"),
    ("slt_deploy.api", "driver"),
    ("slt_deploy.__main__", "driver"),
]


def _modules() -> Dict[str, Path]:
    """Module name -> file, with the installed layout (exporters/ and hardware_profiles/ inside the package)."""
    found: Dict[str, Path] = {}
    for folder, prefix in ((ROOT / "slt_deploy", "slt_deploy"), (ROOT / "exporters", "slt_deploy.exporters"),
                           (ROOT / "hardware_profiles", "slt_deploy.hardware_profiles")):
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(name: str) -> str:
    """The module an imported name lives in: the longest known module prefix of ``name``."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _dynamic_target(node: ast.AST, module: str, package: str):
    """The module an ``importlib.import_module(...)`` call imports: a name when the argument can be read (a string,
    or an f-string on ``__package__``/``__name__``), "?" when it cannot, None when ``node`` is no such call."""
    if not (isinstance(node, ast.Call) and node.args and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            or (isinstance(node.func, ast.Name) and node.func.id == "import_module"))):
        return None
    parts = []
    arg = node.args[0]
    for piece in (arg.values if isinstance(arg, ast.JoinedStr) else [arg]):
        if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
            parts.append(piece.value)
        elif isinstance(piece, ast.FormattedValue) and isinstance(piece.value, ast.Name) \
                and piece.value.id in ("__package__", "__name__"):
            parts.append(package if piece.value.id == "__package__" else module)
        else:
            return "?"
    name = "".join(parts)
    if name.startswith(".") and len(node.args) > 1:  # import_module(".xylo", __package__)
        return "?" if not (isinstance(node.args[1], ast.Name) and node.args[1].id == "__package__") \
            else package + name
    return name


# Modules that call importlib.import_module on a name the checker cannot read: each imports code from outside
# the package only (a vendor library, a user's model file), so no edge of the graph hides there.
OPAQUE_IMPORTS = {"slt_deploy.simulate.synsense": "a SynSense library, samna kept out",
                  "slt_deploy.models.user": "a user's model file"}


def _opaque_imports(module: str) -> bool:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    return any(_dynamic_target(node, module, package) == "?" for node in ast.walk(tree))


def _imports(module: str) -> Set[str]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    targets: Set[str] = set()
    for node in ast.walk(tree):
        dynamic = _dynamic_target(node, module, package)
        if dynamic not in (None, "?"):  # importlib.import_module("slt_deploy.x") is an import like any other
            names = [dynamic]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from pkg import sub` imports the submodule when there is one
            names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("slt_deploy"):
                target = _resolve(name)
                if target and target != module:
                    targets.add(target)
    return targets


GRAPH = {m: _imports(m) for m in MODULES}


def stage(module: str) -> str:
    if module == "slt_deploy":
        return "foundation"
    for prefix, name in STAGE_OF:
        if module == prefix or module.startswith(prefix + "."):
            return name
    raise AssertionError(f"module {module} has no stage; add it to STAGE_OF")


def test_every_module_has_a_stage():
    assert {stage(m) for m in MODULES} <= set(STAGES)
    for expected in ("slt_deploy.simulate", "slt_deploy.cost", "slt_deploy.report", "slt_deploy.data",
                     "slt_deploy.models", "slt_deploy.search", "slt_deploy.compile", "slt_deploy.sweep"):
        assert _is_package(expected), f"{expected} should be a package"


def test_imports_only_point_down_the_pipeline():
    upward = [f"{m} ({stage(m)}) imports {t} ({stage(t)})" for m, targets in GRAPH.items() for t in targets
              if STAGES.index(stage(t)) > STAGES.index(stage(m))]
    assert not upward, "\n".join(sorted(upward))


def _cycles() -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert _cycles() == []


@pytest.mark.parametrize("package", ["data", "models", "search", "compile", "simulate", "cost", "report"])
def test_stage_packages_say_what_they_take_and_give(package):
    doc = ast.get_docstring(ast.parse(MODULES[f"slt_deploy.{package}"].read_text()))
    assert doc and "Takes" in doc and "give" in doc, f"slt_deploy/{package}/__init__.py: say what the stage takes and gives"


def test_the_checker_sees_a_planted_upward_import_and_circle():
    """The checks above could not fail if the parser missed imports: plant both faults and see them caught."""
    planted = {m: set(t) for m, t in GRAPH.items()}
    planted["slt_deploy.data.base"].add("slt_deploy.report.build")
    planted["slt_deploy.report.build"].add("slt_deploy.data.base")
    globals()["GRAPH"], saved = planted, GRAPH
    try:
        upward = [t for t in planted["slt_deploy.data.base"] if STAGES.index(stage(t)) > STAGES.index("data")]
        assert upward == ["slt_deploy.report.build"]
        assert any({"slt_deploy.data.base", "slt_deploy.report.build"} <= set(c) for c in _cycles())
    finally:
        globals()["GRAPH"] = saved


def test_lazy_imports_are_seen():
    # simulate.run imports the Lava backend inside a function; the graph must still have that edge
    assert "slt_deploy.simulate.lava" in GRAPH["slt_deploy.simulate.run"]


def test_importlib_imports_are_edges_or_declared():
    """An import through importlib is a dependency the import statements do not show (simulate.run once loaded
    the vendor backends that way while they imported run back: a circle no check saw). A name the checker can
    read becomes an edge of the graph; any other must be declared in OPAQUE_IMPORTS with what it loads."""
    opaque = {m for m in MODULES if _opaque_imports(m)}
    unknown = sorted(opaque - set(OPAQUE_IMPORTS))
    assert not unknown, f"importlib.import_module on a name the checker cannot read in {unknown}"
    planted = ast.parse('import importlib\n'
                        'def run():\n'
                        '    return importlib.import_module(f"{__package__}.xylo")\n'
                        'def other(name):\n'
                        '    return importlib.import_module(name)\n')
    calls = [_dynamic_target(n, "slt_deploy.simulate.run", "slt_deploy.simulate") for n in ast.walk(planted)]
    assert [c for c in calls if c is not None] == ["slt_deploy.simulate.xylo", "?"]


def test_the_vendor_backends_register_without_a_circle():
    # the vendor simulators register in the backend registry; none imports simulate.run back
    for vendor in ("slt_deploy.simulate.xylo", "slt_deploy.simulate.speck"):
        assert vendor in GRAPH["slt_deploy.simulate.run"]
        assert "slt_deploy.simulate.backends" in GRAPH[vendor]
        assert "slt_deploy.simulate.run" not in GRAPH[vendor]


def test_every_package_is_installed():
    """pyproject's package list names every package folder (an unlisted one is missing from a wheel, while an
    editable install still finds it)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest's own dependency
        import tomli as tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert {m for m in MODULES if _is_package(m)} == listed
