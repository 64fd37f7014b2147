"""Makes the runs a test starts (the CLI, benchmarks, notebooks) read a small Fashion-MNIST.

`tests/conftest.py` writes the first training and test images of the real Fashion-MNIST as IDX
files into `$NS3L_TEST_FASHION_MNIST_DIR` (their counts in `$NS3L_TEST_FASHION_MNIST_SIZES`,
"TRAIN,TEST") and puts this directory on `PYTHONPATH`, so every Python process a test starts
imports this module at start-up. It makes that copy the default data directory (unless the
test set `$NS3L_DATA_DIR` itself) and declares its sizes as Fashion-MNIST's, so the reader's
size check accepts it. Every evaluation of a test's run then reads 1,000 test images, not
10,000.
"""

import dataclasses
import os

if os.environ.get("NS3L_TEST_FASHION_MNIST_DIR"):
    from ns3l_tf.data import sources

    os.environ.setdefault(sources.DATA_DIR_ENV, os.environ["NS3L_TEST_FASHION_MNIST_DIR"])
    _train, _test = (int(n) for n in os.environ["NS3L_TEST_FASHION_MNIST_SIZES"].split(","))
    sources.DATASETS["fashion_mnist"] = dataclasses.replace(
        sources.DATASETS["fashion_mnist"], train_size=_train, test_size=_test
    )
