"""The package's layers: no module imports one from a higher layer, and flag checking (config
and the command lines' start) imports no TensorFlow."""

import ast
import pathlib
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT

# Lowest first; a module may import from its own layer or any layer below.
LAYERS = [
    (
        "ns3l_tf.settings",
        "ns3l_tf.io_utils",
        "ns3l_tf.requirements",
        "ns3l_tf.flagfiles",
        "ns3l_tf.registration",
        "ns3l_tf.lazy",
    ),
    (
        "ns3l_tf.losses",
        "ns3l_tf.schedules",
        "ns3l_tf.metrics",
        "ns3l_tf.models",
        "ns3l_tf.data",
        "ns3l_tf.checkpoints",
        "ns3l_tf.backend",
        "ns3l_tf.evaluation_report",
    ),
    ("ns3l_tf.methods", "ns3l_tf.negatives", "ns3l_tf.nearest_neighbours"),
    ("ns3l_tf.ssl_model", "ns3l_tf.callbacks", "ns3l_tf.config", "ns3l_tf.run_dir"),
    ("ns3l_tf.distribute", "ns3l_tf.experiment", "ns3l_tf.loop"),
    ("ns3l_tf.training", "ns3l_tf.tuning", "ns3l_tf.inference"),
    (
        "ns3l_tf.cli",
        "ns3l_tf.flag_reference",
        "ns3l_tf.train",
        "ns3l_tf.tune",
        "ns3l_tf.inspect_data",
        "ns3l_tf.evaluate",
    ),
]
PACKAGE = pathlib.Path(REPO_ROOT) / "ns3l_tf"


def _layer(module: str) -> int:
    if module == "ns3l_tf":  # the public facade, loading any layer on first use
        return len(LAYERS)
    matches = [
        (len(prefix), rank)
        for rank, layer in enumerate(LAYERS)
        for prefix in layer
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_lazy_import(node) -> bool:
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "lazy"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    )


def _imports(path: pathlib.Path, module: str):
    """Every ns3l_tf module `path` imports, at any depth of the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if _is_lazy_import(node):  # `ops = lazy("ns3l_tf.losses")` imports on first use
            names = [node.args[0].value]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        yield from (name for name in names if name.startswith("ns3l_tf."))


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_higher_layer(path):
    module = _module_name(path)
    rank = _layer(module)
    for imported in _imports(path, module):
        # `from ns3l_tf.x import name` lists `ns3l_tf.x.name`; judge the module part.
        target = imported
        while target not in _KNOWN and "." in target:
            target = target.rpartition(".")[0]
        assert _layer(target) <= rank, f"{module} (layer {rank}) imports {target}"


_KNOWN = {_module_name(p) for p in MODULES}


@pytest.mark.parametrize(
    "module, argv, message",
    [
        ("ns3l_tf.train", ["--ns3l_threshold=2"], "--ns3l_threshold=2.0: must be in the open"),
        ("ns3l_tf.train", ["--vat_epsilon=0"], "--vat_epsilon=0.0: must be > 0"),
        ("ns3l_tf.tune", ["--tuner=grid"], "--tuner=grid: unknown; allowed: random"),
        ("ns3l_tf.inspect_data", ["--num_labeled=15"], "--num_labeled=15: must be a positive"),
        # Good flags: then the missing TensorFlow, before anything is written.
        (
            "ns3l_tf.train",
            ["--preset=fmnist_quick", "--output_dir=/nonexistent/run"],
            "TensorFlow is not installed; install ns3l_tf with it: pip install 'ns3l_tf[cpu]'",
        ),
    ],
)
def test_a_bad_flag_is_one_line_without_tensorflow(module, argv, message):
    # `import tensorflow` (and keras, which imports it) fail in this process.
    code = (
        "import runpy, sys\n"
        "sys.modules['tensorflow'] = sys.modules['keras'] = None\n"
        f"sys.argv = [{module!r}, *{argv!r}]\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_lazy_imports_count_as_imports():
    path = PACKAGE / "methods" / "vat.py"
    assert {"ns3l_tf.losses", "ns3l_tf.backend"} <= set(_imports(path, "ns3l_tf.methods.vat"))
