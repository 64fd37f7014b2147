"""A lab's own base method, as a user writes it: one module outside the package.

`test_methods_module` runs it from the command lines (`--methods_module`); `test_all_methods`
puts it through the shared method checks beside the package's own.
"""

import contextlib
import importlib.util
import sys
import textwrap

from ns3l_tf import methods

# The whole method: settings, implementation and registration, importing no framework at
# module level (as the package's own method modules do).
LAB_METHODS = '''
    """A lab's own base method: cross-entropy with label smoothing."""

    import dataclasses

    from ns3l_tf.lazy import lazy
    from ns3l_tf.methods import BASE, Method, register
    from ns3l_tf.methods.base import BaseOutputs, Contribution, Term
    from ns3l_tf.settings import setting, unit_interval_from_zero

    ops = lazy("keras.ops")


    @dataclasses.dataclass(frozen=True)
    class SmoothedSettings:
        epsilon: float = setting(0.1, "Label smoothing.", check=unit_interval_from_zero)


    class Smoothed:
        loss_names = ("smoothed_loss",)
        metric_names = ()

        def __init__(self, settings, context):
            self.epsilon, self.num_classes = settings.epsilon, context.num_classes

        def __call__(self, model, x_labeled, y_labeled, x_unlabeled=None):
            logits = model.classify(x_labeled, training=True)
            targets = ops.one_hot(y_labeled, self.num_classes)
            targets = targets * (1 - self.epsilon) + self.epsilon / self.num_classes
            log_probs = ops.log_softmax(logits, axis=-1)
            loss = -ops.mean(ops.sum(targets * log_probs, axis=-1))
            return BaseOutputs(
                logits, y_labeled, None, None, Contribution(losses={"smoothed_loss": Term(loss)})
            )


    register(Method("smoothed", BASE, SmoothedSettings, Smoothed, uses_unlabeled=False))
'''


@contextlib.contextmanager
def lab_methods_registered(directory):
    """Writes `LAB_METHODS` into `directory`, imports it (registering `smoothed`) and
    unregisters it on exit, so other tests see the package's registry unchanged."""
    path = directory / "lab_methods_for_checks.py"
    path.write_text(textwrap.dedent(LAB_METHODS))
    spec = importlib.util.spec_from_file_location("lab_methods_for_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        methods.unregister("smoothed")
        sys.modules.pop("lab_methods_for_checks", None)
