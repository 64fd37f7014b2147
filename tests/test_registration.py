"""`import ns3l_tf` then `keras.saving.load_model(path)` works (either import first), and
`import ns3l_tf` alone still imports neither Keras nor TensorFlow."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from ns3l_tf import SSLModel, models

LOAD = (
    "import numpy as np\n"
    "model = keras.saving.load_model({path!r})\n"
    "saved = np.load({inputs!r})\n"
    "np.testing.assert_allclose(np.asarray(model(saved['images'])), saved['logits'], "
    "rtol=1e-5, atol=1e-5)\n"
    "print(type(model).__module__, type(model).__name__)\n"
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved")
    keras.utils.set_random_seed(0)
    model = SSLModel(models.small_cnn(), 10, algorithm="ns3l", ns3l_threshold=0.05)
    model.compile()
    images = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype("float32")
    np.savez(directory / "inputs.npz", images=images, logits=np.asarray(model(images)))
    model.save(directory / "model.keras")
    return directory


def _python(code):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("imports", ["import ns3l_tf, keras", "import keras, ns3l_tf"])
@pytest.mark.large
def test_keras_load_model_finds_the_classes_after_import_ns3l_tf(saved, imports):
    code = (
        imports
        + "\n"
        + LOAD.format(path=str(saved / "model.keras"), inputs=str(saved / "inputs.npz"))
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ns3l_tf.ssl_model SSLModel"


def test_import_ns3l_tf_alone_imports_no_keras():
    result = _python(
        "import sys, ns3l_tf; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
