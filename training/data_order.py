"""The order in which training images are drawn into batches (the ``data_order`` setting).

Three orders, all deterministic functions of the run's seed and of the step, so that
a run resumed from a checkpoint continues exactly where it stopped:

* ``permutation``: epoch ``e`` visits the training images in the order of
  ``argsort(stateless_uniform(fold((s, TRAINING_SALT), EPOCH, e)))``; the images left
  over after the last whole batch of an epoch are skipped.
* ``buffer_across_epochs``: the stream of image indices ``0, 1, ..., N-1, 0, 1, ...``
  (the file order, repeated) passes through a shuffle buffer of 1024 entries, as
  ``tf.data``'s ``repeat().shuffle(1024)`` does in the DisARM and ARMS reference code:
  each draw takes a uniformly chosen entry of the buffer and refills it with the next
  index of the stream. Epochs blend into each other.
* ``buffer_per_epoch``: each epoch's stream ``0 .. N-1`` passes through the buffer on
  its own, which is drained at the end of the epoch, as ``shuffle(1024).repeat()``
  does in the RODEO reference; batches may straddle two epochs.

The buffer orders carry state from step to step (the buffer and the stream's
position); it is part of the checkpoint (``state``/``load``). The picks of step ``t``
come from a NumPy Philox generator keyed by the run's seed and ``t``.
"""

import numpy as np
import tensorflow as tf

from contracts import streams

BUFFER_SIZE = 1024
ORDERS = ("buffer_across_epochs", "buffer_per_epoch", "permutation")


class DataOrder:
  """Batches of training-image indices for one run."""

  def __init__(self, order, seed, num_train, batch_size):
    if order not in ORDERS:
      raise ValueError(f"data_order must be one of {', '.join(ORDERS)}, got {order!r}")
    if num_train < batch_size:
      raise ValueError(f"batch_size {batch_size} exceeds the {num_train} training images")
    self.order, self.seed, self.num_train, self.batch_size = order, int(seed), int(num_train), int(batch_size)
    self.steps_per_epoch = num_train // batch_size
    self._epoch_cache = (None, None)
    self.buffer_size = min(BUFFER_SIZE, self.num_train)
    self._reset_buffer()

  # --------------------------------------------------------------- checkpoint state
  def _reset_buffer(self):
    self.buffer = np.arange(self.buffer_size, dtype=np.int64)
    self.filled = self.buffer_size  # live entries (drains at the end of an epoch in buffer_per_epoch)
    self.cursor = self.buffer_size  # stream position of the next index to enter the buffer

  def state(self):
    """``{name: array}`` to checkpoint (empty for ``permutation``, which has no state)."""
    if self.order == "permutation":
      return {}
    return {
      "data_order/buffer": self.buffer.copy(),
      "data_order/filled": np.int64(self.filled),
      "data_order/cursor": np.int64(self.cursor),
    }

  def load(self, state):
    if self.order == "permutation":
      return
    missing = [k for k in ("data_order/buffer", "data_order/filled", "data_order/cursor") if k not in state]
    if missing:
      raise ValueError(f"the checkpoint lacks {', '.join(missing)}: it was written with another data_order")
    self.buffer = np.asarray(state["data_order/buffer"], np.int64).copy()
    self.filled, self.cursor = int(state["data_order/filled"]), int(state["data_order/cursor"])

  # ------------------------------------------------------------------- the orders
  def indices(self, start_step, num_steps):
    """``[num_steps, batch_size]`` int32: the images of steps ``start_step .. start_step + num_steps - 1``.

    For the buffer orders the calls must follow each other (the state advances).
    """
    if self.order == "permutation":
      return np.stack([self._permutation_batch(t) for t in range(start_step, start_step + num_steps)])
    return np.stack([self._buffer_batch(t) for t in range(start_step, start_step + num_steps)])

  def _permutation_batch(self, step):
    epoch, position = divmod(step, self.steps_per_epoch)
    if self._epoch_cache[0] != epoch:
      seed = tf.constant([self.seed, streams.TRAINING_SALT], tf.int32)
      for value in (streams.EPOCH, epoch):
        seed = tf.random.experimental.stateless_fold_in(seed, tf.constant(value, tf.int64))
      keys = tf.random.stateless_uniform([self.num_train], seed)
      self._epoch_cache = (epoch, tf.argsort(keys).numpy().astype(np.int32))
    start = position * self.batch_size
    return self._epoch_cache[1][start : start + self.batch_size]

  def _buffer_batch(self, step):
    rng = np.random.Generator(np.random.Philox(key=[self.seed, step]))
    picks = rng.random(self.batch_size)
    out = np.empty(self.batch_size, np.int32)
    per_epoch = self.order == "buffer_per_epoch"
    for i in range(self.batch_size):
      if per_epoch and self.filled == 0:  # the epoch's buffer is drained: the next epoch starts afresh
        self._reset_buffer()
      j = min(int(picks[i] * self.filled), self.filled - 1)
      out[i] = self.buffer[j]
      if per_epoch and self.cursor >= self.num_train:
        # The epoch's stream is exhausted: remove the entry (the buffer drains).
        self.filled -= 1
        self.buffer[j] = self.buffer[self.filled]
      else:
        self.buffer[j] = self.cursor % self.num_train
        self.cursor += 1
    return out
