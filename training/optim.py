"""Adam and SGD as small tf.Modules whose state is plain variables.

Hand-rolled rather than Keras optimisers so that the update runs inside a
``tf.while_loop`` under XLA with all slots created up front, is checkpointed by
``tf.train.Checkpoint`` with the model, and stays easy to stack along a leading
axis. The update rules are the standard ones (Kingma & Ba 2015, algorithm 1,
with the bias correction folded into the step size, as Keras does).
"""

import tensorflow as tf


class Adam(tf.Module):
  def __init__(self, variables, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-7, name="adam"):
    super().__init__(name=name)
    self.variables_to_train = list(variables)
    self.learning_rate = learning_rate
    self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
    self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name="m") for v in self.variables_to_train]
    self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name="v") for v in self.variables_to_train]

  @tf.autograph.experimental.do_not_convert
  def apply(self, grads):
    t = tf.cast(self.iterations.assign_add(1), tf.float32)
    # TensorFlow's fused Adam kernel: one pass over (var, m, v, grad) per variable
    # instead of a dozen elementwise kernels, each streaming the whole tensor
    # through memory (benchmarks/README.md). Same update as written out:
    #   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    #   var <- var - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps).
    beta1_power, beta2_power = self.beta1**t, self.beta2**t
    for var, g, m, v in zip(self.variables_to_train, grads, self.m, self.v):
      tf.raw_ops.ResourceApplyAdam(
        var=var.handle,
        m=m.handle,
        v=v.handle,
        beta1_power=beta1_power,
        beta2_power=beta2_power,
        lr=tf.constant(self.learning_rate, tf.float32),
        beta1=tf.constant(self.beta1, tf.float32),
        beta2=tf.constant(self.beta2, tf.float32),
        epsilon=tf.constant(self.epsilon, tf.float32),
        grad=g,
        use_locking=False,
      )


class SGD(tf.Module):
  def __init__(self, variables, learning_rate, name="sgd"):
    super().__init__(name=name)
    self.variables_to_train = list(variables)
    self.learning_rate = learning_rate

  @tf.autograph.experimental.do_not_convert
  def apply(self, grads):
    for var, g in zip(self.variables_to_train, grads):
      var.assign_sub(self.learning_rate * g)
