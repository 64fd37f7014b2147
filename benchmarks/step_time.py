"""Median training-step time of every method, per backend and precision, with and without XLA.

    python benchmarks/step_time.py [--models=wrn28_2,small_cnn] [--algorithms=...]
        [--precisions=float32,mixed_bfloat16] [--xla=false] [--steps=6]
    KERAS_BACKEND=jax python benchmarks/step_time.py --xla=true ...   # the JAX rows

Each configuration builds a fresh `SSLModel`, compiles it (`jit_compile` on or off), runs the
function the package's training loop runs (`ns3l_tf.backend`: on TensorFlow the one `fit`
traces; on JAX the jitted stateless step, which always compiles with XLA) on a fixed batch
(64 labeled + 64 unlabeled, two views of each unlabeled image for MixMatch, FixMatch and
FlexMatch: not FixMatch's 7 unlabeled images per labeled one), discards 2 warm-up steps
(tracing) and reports the median of `--steps` timed steps, the images per second it consumes,
the FLOPs of one step and the share of the machine's matmul roof those FLOPs reach. FLOPs are
counted on TensorFlow's traced step graph (the convolutions, their gradients and the matrix
products it executes) and by XLA's cost analysis of the compiled step on JAX. The roof is
measured in the same run, on the same backend: the best of several 2048×2048 matrix products
in float32 and in bfloat16. The machine line records the CPU's bfloat16 features
(AVX512_BF16, AMX): without them bfloat16 is emulated.

Rows accumulate in `--results_dir/step_time.json` (a rerun of some configurations replaces just
those rows; the file is rewritten after each one) and render as `step_time.md`, with the
targets checked: NS³L adds ≤ 5% to any base method that already processes unlabeled data;
bfloat16 is ≥ 1.6× faster than float32 for WRN-28-2's supervised and NS³L steps and ≥ 1.5×
for the small CNN's NS³L step; VAT's float32 step is ≤ 3.4× the float32 supervised step.
"""

import itertools
import json
import os
import platform
import time

import keras
import numpy as np
from absl import app, flags

from ns3l_tf import SSLModel, backend, models, requirements
from ns3l_tf.lazy import lazy

tf = lazy("tensorflow")  # the TensorFlow rows only: the JAX rows run where it is not installed

FLAGS = flags.FLAGS

SHAPES = {"wrn28_2": (32, 32, 3), "small_cnn": (28, 28, 1)}
ALGORITHMS = [
    "supervised",
    "ns3l",
    "ns3l/2views",
    "pseudo_label",
    "pseudo_label+ns3l",
    "vat",
    "vat+ns3l",
    "vat+entmin",
    "vat+entmin+ns3l",
    "mixmatch",
    "mixmatch+ns3l",
    "fixmatch",
    "fixmatch+ns3l",
    "flexmatch",
    "flexmatch+ns3l",
]
NS3L_OVERHEAD_BUDGET = 1.05
VAT_VS_SUPERVISED_BUDGET = 3.4
BFLOAT16_SPEEDUPS = {("wrn28_2", "supervised"): 1.6, ("wrn28_2", "ns3l"): 1.6}
BFLOAT16_SPEEDUPS[("small_cnn", "ns3l")] = 1.5


def cpu_features() -> list[str]:
    """The bfloat16 features of this CPU (Linux's /proc/cpuinfo flags), if any."""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return []
    return [name for name in ("avx512_bf16", "amx_bf16") if name in words]


def matmul_roof(dtype: str, size: int = 2048, repeats: int = 10) -> float:
    """The best GFLOP/s of a `size`² matrix product in `dtype` on this machine and backend."""
    a = keras.ops.cast(keras.random.normal((size, size), seed=0), dtype)
    if backend.name() == "jax":
        import jax

        product = jax.jit(lambda x: x @ x)
    else:
        product = tf.function(lambda x: tf.matmul(x, x))
    np.asarray(product(a))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(product(a))
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _op_flops(op) -> int:
    """Multiply-adds × 2 of a convolution, its two gradients, or a matrix product."""
    if op.type in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        # Each costs what the forward convolution does: 2 · N·Ho·Wo · kh·kw·Cin · Cout.
        large = op.outputs[0] if op.type == "Conv2D" else op.inputs[2]  # (N, Ho, Wo, Cout)
        kernel = op.outputs[0] if op.type == "Conv2DBackpropFilter" else op.inputs[1]
        kh, kw, cin, _ = kernel.shape
        return 2 * int(np.prod(large.shape)) * kh * kw * cin
    if op.type == "MatMul":
        a = op.inputs[0].shape
        rows, inner = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        return 2 * rows * inner * op.outputs[0].shape[-1]
    return 0


def step_flops(train_step, batch) -> int:
    """Floating-point operations of one `train_step(batch)`, counted from its traced graph:
    the convolutions (and their input and filter gradients) and matrix products the step
    executes, i.e. those its outputs and variable updates depend on (a gradient that nothing
    uses, such as the filter gradients of VAT's power iteration, is pruned at run time)."""
    graph = tf.function(train_step).get_concrete_function(batch).graph
    roots = [t.op for t in graph.outputs]
    roots += [op for op in graph.get_operations() if op.op_def.is_stateful]
    executed, stack = set(), roots
    while stack:
        op = stack.pop()
        if op not in executed:
            executed.add(op)
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    return sum(_op_flops(op) for op in executed)


def synthetic_batch(model: SSLModel, shape, batch_size: int):
    """A fixed normal batch of `batch_size` labeled and unlabeled images (×augmentations);
    returns it and the number of images it holds."""
    rng = np.random.default_rng(0)
    x_l = rng.normal(size=(batch_size, *shape)).astype("float32")
    y_l = (np.arange(batch_size) % 10).astype("int64")
    if not model.uses_unlabeled_data:
        return (x_l, y_l), batch_size
    augmentations = model.unlabeled_augmentations
    u_shape = (batch_size, augmentations) if augmentations > 1 else (batch_size,)  # batch-major
    x_u = rng.normal(size=(*u_shape, *shape)).astype("float32")
    if "indices" in model.unlabeled_extra_keys:  # FlexMatch's per-image state
        x_u = {"images": x_u, "indices": np.arange(batch_size, dtype="int64")}
    return ((x_l, y_l), x_u), batch_size * (1 + augmentations)


def xla_step_flops(model: SSLModel, batch) -> int:
    """Floating-point operations of one jitted JAX `train_step`, by XLA's cost analysis."""
    import jax

    state = backend.steps().state_of(model)
    compiled = jax.jit(model.train_step).lower(state, batch).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return int(analysis.get("flops", 0))


def median_step_seconds(model: SSLModel, batch, steps: int) -> tuple[float, float]:
    """(first call, median of `steps` later calls) in seconds of the function the training
    loop runs, on one fixed batch; the second call is a discarded warm-up."""
    if backend.name() == "jax":
        train_function = backend.steps().make_train_function(model, itertools.repeat(batch))
    else:
        model.make_train_function()
        train_function = lambda: model.train_function(iter([batch]))  # noqa: E731

    def run():
        start = time.perf_counter()
        float(train_function()["loss"])  # blocks until the step is done
        return time.perf_counter() - start

    first = run()
    run()
    return first, float(np.median([run() for _ in range(steps)]))


def time_step(
    model_name: str, row: str, precision: str, xla: bool, steps: int, batch_size: int
) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    shape = SHAPES[model_name]
    algorithm, _, variant = row.partition("/")
    settings = {"ns3l_views": 2} if variant == "2views" else {}
    backbone = models.build_backbone(model_name, 10, shape, precision=precision)
    # A pool of one batch for the methods with a state per unlabeled image (FlexMatch).
    model = SSLModel(
        backbone, 10, algorithm=algorithm, seed=0, num_unlabeled=batch_size, **settings
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=xla)
    # Built before the step: a tf.function whose first trace creates variables traces twice.
    model.build_for_training()
    batch, images = synthetic_batch(model, shape, batch_size)
    if backend.name() == "jax":
        flops = xla_step_flops(model, batch)
    else:
        batch = tf.nest.map_structure(tf.constant, batch)
        flops = step_flops(model.train_step, batch)
    first, seconds = median_step_seconds(model, batch, steps)
    return {
        "backend": backend.name(),
        "model": model_name,
        "algorithm": row,
        "precision": precision,
        "xla": xla,
        "seconds_per_step": round(seconds, 4),
        "images_per_second": round(images / seconds, 1),
        "gflops_per_step": round(flops / 1e9, 3),
        "gflops_per_second": round(flops / seconds / 1e9, 1),
        "first_call_seconds": round(first, 2),
    }


def _key(row):
    return (row.get("backend", "tensorflow"), row["model"], row["algorithm"], row["precision"],
            row["xla"])  # fmt: skip


def _check(name, model, ratio, budget, at_most=True, **where):
    met = ratio <= budget if at_most else ratio >= budget
    return {"check": name, "model": model, **where, "ratio": round(ratio, 3), "budget": budget,
            "at_most": at_most, "met": met}  # fmt: skip


def checks(rows: list[dict]) -> list[dict]:
    """The targets of the module docstring, for the rows present."""
    seconds = {_key(r): r["seconds_per_step"] for r in rows}
    found = []
    for (name_of_backend, model, algorithm, precision, xla), value in sorted(seconds.items()):
        where = {"backend": name_of_backend, "precision": precision, "xla": xla}
        base = algorithm.removesuffix("+ns3l")

        def row_of(a, p=precision, b=name_of_backend, m=model, x=xla):
            return (b, m, a, p, x)

        if base not in (algorithm, "supervised") and row_of(base) in seconds:
            ratio = value / seconds[row_of(base)]
            name = f"{algorithm} / {base}"
            found.append(_check(name, model, ratio, NS3L_OVERHEAD_BUDGET, **where))
        supervised = row_of("supervised")
        if algorithm == "vat" and precision == "float32" and supervised in seconds:
            ratio = value / seconds[supervised]
            found.append(
                _check("vat / supervised", model, ratio, VAT_VS_SUPERVISED_BUDGET, **where)
            )
        full = row_of(algorithm, "float32")
        if (
            precision == "mixed_bfloat16"
            and (model, algorithm) in BFLOAT16_SPEEDUPS
            and full in seconds
        ):
            speedup, budget = seconds[full] / value, BFLOAT16_SPEEDUPS[(model, algorithm)]
            name = f"{algorithm}: float32 / bfloat16"
            found.append(
                _check(
                    name, model, speedup, budget, at_most=False, backend=name_of_backend, xla=xla
                )
            )
    return found


def _order(row):
    algorithm = ALGORITHMS.index(row["algorithm"]) if row["algorithm"] in ALGORITHMS else 99
    backend_rank = 0 if row.get("backend", "tensorflow") == "tensorflow" else 1
    return list(SHAPES).index(row["model"]), backend_rank, row["xla"], row["precision"], algorithm


def markdown(report: dict) -> str:
    machines = report.get("machine_by_backend", {"tensorflow": report["machine"]})
    roof_lines = [
        f"- {name}: {machines.get(name, '')}; matmul roof {roof['float32']:.0f} GFLOP/s "
        f"float32, {roof['bfloat16']:.0f} GFLOP/s bfloat16"
        for name, roof in report.get(
            "matmul_roof_by_backend", {"tensorflow": report["matmul_roof_gflops"]}
        ).items()
    ]
    lines = [
        "# Training-step time per method, backend and precision",
        "",
        f"Batch {report['batch_size']} labeled + {report['batch_size']} unlabeled (×2 views "
        "for MixMatch, FixMatch and FlexMatch, not FixMatch's 7 unlabeled images per labeled "
        "one); median of timed steps after 2 warm-up steps; FLOPs counted on TensorFlow's "
        "traced step graph, or by XLA's cost analysis on JAX; each backend's matmul roof "
        "measured in its own run. `python benchmarks/step_time.py` "
        "(`KERAS_BACKEND=jax` for the JAX rows).",
        "",
        *roof_lines,
        "",
        "| backend | model | algorithm | precision | XLA | s/step | images/s | GFLOP/step | "
        "GFLOP/s | share of roof | first call (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        name_of_backend = r.get("backend", "tensorflow")
        roof = report.get("matmul_roof_by_backend", {}).get(
            name_of_backend, report["matmul_roof_gflops"]
        )
        roof = roof["bfloat16" if "bfloat16" in r["precision"] else "float32"]
        lines.append(
            f"| {name_of_backend} | {r['model']} | {r['algorithm']} | {r['precision']} | "
            f"{'on' if r['xla'] else 'off'} | {r['seconds_per_step']:.3f} | "
            f"{r['images_per_second']:.0f} | {r['gflops_per_step']:.2f} | "
            f"{r['gflops_per_second']:.0f} | {100 * r['gflops_per_second'] / roof:.0f}% | "
            f"{r['first_call_seconds']:.1f} |"
        )
    lines += ["", "| check | model | where | ratio | target | met |", "|---|---|---|---|---|---|"]
    for c in report["checks"]:
        where = ", ".join(f"{k} {v}" for k, v in c.items() if k in ("backend", "precision", "xla"))
        target = f"{'≤' if c['at_most'] else '≥'} {c['budget']}"
        lines.append(
            f"| {c['check']} | {c['model']} | {where} | {c['ratio']:.2f} | {target} | "
            f"{'yes' if c['met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_list("models", list(SHAPES), "Backbones to time.")
    flags.DEFINE_list(
        "algorithms", ALGORITHMS, "Algorithms to time ('ns3l/2views': NS3L with --ns3l_views=2)."
    )
    flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions.")
    flags.DEFINE_list("xla", ["false"], "jit_compile settings to time.")
    flags.DEFINE_integer("steps", 6, "Timed steps per configuration.")
    flags.DEFINE_integer("batch_size", 64, "Labeled and unlabeled batch size.")
    flags.DEFINE_string(
        "results_dir",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
        "Output.",
    )


def accelerator() -> str:
    """The device the running backend computes on: its kind (e.g. `NVIDIA H100 80GB HBM3`, one
    per device), or `no GPU`."""
    if backend.name() == "jax":
        import jax

        devices = [d for d in jax.devices() if d.platform != "cpu"]
        kinds = [d.device_kind for d in devices]
    else:
        kinds = [d.name for d in tf.config.list_physical_devices("GPU")]
    if not kinds:
        return "no GPU"
    return f"{len(kinds)} x {kinds[0]}"


def main(argv):
    del argv
    features = ", ".join(cpu_features()) or "no bfloat16 units (AVX512_BF16/AMX): emulated"
    machine = f"{platform.machine()}, {os.cpu_count()} cores ({features}), {accelerator()}"
    if requirements.tensorflow_installed():
        machine += f", TF {tf.__version__}"
    machine += f", Keras {keras.__version__}"
    if backend.name() == "jax":
        import jax

        machine += f", JAX {jax.__version__}"
    os.makedirs(FLAGS.results_dir, exist_ok=True)
    path = os.path.join(FLAGS.results_dir, "step_time.json")
    rows, roof_by_backend, machines = {}, {}, {}
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        rows = {_key(row): row for row in previous["rows"]}
        roof_by_backend = previous.get(
            "matmul_roof_by_backend", {"tensorflow": previous["matmul_roof_gflops"]}
        )
        machines = previous.get("machine_by_backend", {"tensorflow": previous["machine"]})
    roofs = {dtype: round(matmul_roof(dtype), 1) for dtype in ("float32", "bfloat16")}
    roof_by_backend[backend.name()] = roofs
    machines[backend.name()] = machine
    print(json.dumps({"matmul_roof_gflops": roofs}), flush=True)

    def write():
        ordered = sorted(rows.values(), key=_order)
        report = {
            "machine": machine,
            "machine_by_backend": machines,
            "batch_size": FLAGS.batch_size,
            "matmul_roof_gflops": roofs,
            "matmul_roof_by_backend": roof_by_backend,
        }
        report.update(rows=ordered, checks=checks(ordered))
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(FLAGS.results_dir, "step_time.md"), "w") as f:
            f.write(markdown(report))
        return report

    for model_name in FLAGS.models:
        for xla in [x.lower() == "true" for x in FLAGS.xla]:
            for precision in FLAGS.precisions:
                for algorithm in FLAGS.algorithms:
                    row = time_step(
                        model_name, algorithm, precision, xla, FLAGS.steps, FLAGS.batch_size
                    )
                    rows[_key(row)] = row
                    print(json.dumps(row), flush=True)
                    report = write()
    print(markdown(report))


if __name__ == "__main__":
    define_flags()
    app.run(main)
