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

  def apply(self, grads):
    t = tf.cast(self.iterations.assign_add(1), tf.float32)
    step_size = self.learning_rate * tf.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
    for var, g, m, v in zip(self.variables_to_train, grads, self.m, self.v):
      m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
      v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
      var.assign_sub(step_size * m / (tf.sqrt(v) + self.epsilon))


class SGD(tf.Module):

  def __init__(self, variables, learning_rate, name="sgd"):
    super().__init__(name=name)
    self.variables_to_train = list(variables)
    self.learning_rate = learning_rate

  def apply(self, grads):
    for var, g in zip(self.variables_to_train, grads):
      var.assign_sub(self.learning_rate * g)
