"""`SSLModel`'s steps on TensorFlow: `tf.GradientTape`, one step per `tf.distribute` replica."""

import tensorflow as tf


def num_replicas_in_sync() -> int:
    """Replicas of the current `tf.distribute` strategy (1 outside one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_gather(x):
    """`x` of every replica concatenated along axis 0, in replica order (`x` itself outside
    a strategy or with one replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x
    return context.all_gather(x, axis=0)


def input_gradient(fn, x):
    """`∇ₓ fn(x)` under a `tf.GradientTape` watching `x`."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(x)
    return tape.gradient(value, x)


def variable_creation_scope(model):
    """The scope a model's variables are created in outside its train step: its
    `tf.distribute` strategy's (the default strategy's where it has none)."""
    return model.distribute_strategy.scope()


def make_train_function(model, dataset, strategy):
    """`() → logs`: one `train_step` on the next batch of `dataset` on every replica of
    `strategy`, the logs averaged over replicas as `fit` does. The step is the `tf.function`
    `fit` traces (XLA where `model.jit_compile` and one replica)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Every worker builds the same seeded stream and takes its share of each global
        # batch (auto-sharding by elements: in-memory data has no files to split).
        options = tf.data.Options()
        policy = tf.data.experimental.AutoShardPolicy.DATA
        options.experimental_distribute.auto_shard_policy = policy
        dataset = dataset.with_options(options)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    def step(iterator):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    jit = bool(model.jit_compile) and strategy.num_replicas_in_sync == 1
    function = tf.function(step, reduce_retracing=True, jit_compile=jit)
    return lambda: function(iterator)


# The steps are written for every backend in `keras.ops`, with no Python control flow on
# tensors, so AutoGraph has nothing to convert: it is turned off for them (and everything
# they call), which saves its conversion when `tf.function` traces them (a 4-step
# flags/fmnist_quick.cfg run: 13.4 s -> 11.9 s).
@tf.autograph.experimental.do_not_convert
def train_step(model, data) -> dict:
    """One optimizer step on `data`; returns the logs.

    Each replica computes the local mean of its share; gradients are summed over replicas, so
    the loss is divided by the replica count to give the global-batch mean's gradient.
    """
    with tf.GradientTape() as tape:
        loss, values, accuracy_inputs = model.compute_ssl_losses(data)
        scaled_loss = model.optimizer.scale_loss(loss / num_replicas_in_sync())
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    model.optimizer.apply(gradients, model.trainable_variables)
    return model.update_train_metrics(values, accuracy_inputs)


@tf.autograph.experimental.do_not_convert
def test_step(model, data) -> dict:
    """Updates the evaluation metrics on `(images, labels)`; returns the logs."""
    return model.update_test_metrics(data[0], data[1])
