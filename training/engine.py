"""The gradient engine: model + estimator + batch + noise -> every gradient and loss of a step.

One path serves the training step, the variance basket and the toy problem, for
models with one or several stochastic layers and for estimators of ``E[f]`` and of a
multi-sample bound alike. ``step_gradients`` does, for a batch ``x``:

1. **Encoder.** For every stochastic layer ``l`` the registered estimator is called as

       estimator.fn(f_l, logits_l, noise_l, state=states[l], context=context_l)

   * one layer: ``f_0(b) = ELBO(x, b)`` with the encoder logits inside ``f`` held
     constant (their direct gradient has expectation zero, PROTOCOL.md section 1),
     or, for an estimator of a multi-sample bound, kept (the direct term);
   * layered models (training one estimate per layer): ``logits_l`` are the encoder
     logits of layer ``l`` at a forward sample ``b ~ q(b|x)`` of the layers below, and
     ``f_l(c)`` is the full ELBO of the configuration whose layers below ``l`` are the
     forward sample's, whose layer ``l`` is the candidate ``c`` and whose layers above
     are sampled afresh from ``q`` given ``c`` ("completion"; with
     ``share_upper_noise`` every candidate shares the completion's uniforms). Since
     ``d E_q[ELBO] = sum_l E_{b_<l}[d/d logits_l E_{b_l, b_>l | b_<l}[ELBO] d logits_l]``,
     each layer's estimate is unbiased for its part of the encoder gradient.
     Relaxation-based estimators (``Needs.RELAXED``) get their relaxed candidates
     completed with relaxed upper layers from the same uniforms,
     ``b~_j = sigmoid((a_j - logit(u_j)) / lambda)`` (a hard completion would make the
     control variate jump where a threshold is crossed, and the estimate biased).

   The estimates are backpropagated into the encoder: ``sum over batch and bits of
   -g / B * d logits / d theta`` (descent on the batch-mean negative objective), plus
   the direct term of a multi-sample bound.
2. **Decoder and prior.** The gradient of the negative ELBO (or bound) at the samples
   the run's ``decoder_sample`` names: ``independent`` (one forward sample per
   example, drawn apart from the estimator's noise), ``estimator`` (the mean over the
   estimator's own samples, or its bound), ``k_independent`` (the mean over ``K``
   independent samples, reusing the estimator's own independent draws first), reduced
   over the batch by a mean or a sum (``decoder_reduction``). An estimator may fix
   its decoder sample (``Estimator.decoder_sample``: RELAX, VIMCO, local DisARM).
3. **Estimator state.** For estimators with trainable parameters, the gradient of
   their declared loss (``Trainable.loss``) with respect to them, through the
   estimate: in the space ``Trainable.loss_space`` names (the encoder parameters'
   batch-summed gradient, or the per-example estimates at the logits).

Noise comes from the caller as a ``Noise`` source (one run) or a per-member source
(runs stacked by the trainer); the draws each part uses are named in
contracts/streams.py. The engine never sees seeds or member axes.
"""

import contextlib
import dataclasses
import functools
from typing import NamedTuple

import tensorflow as tf

from contracts import streams
from estimators import Objective


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """The run settings the engine reads (``contracts.settings.Settings`` has their documentation)."""

  decoder_sample: str = "independent"
  decoder_reduction: str = "as_reference"
  share_upper_noise: bool = False
  control_variate_input: str = "raw"

  @classmethod
  def from_settings(cls, settings):
    return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


class StepGradients(NamedTuple):
  """What ``step_gradients`` returns. Gradients have their variables' shapes (member axis first when stacked).

  Attributes:
    loss: ``-mean ELBO`` (or bound) over the batch at the decoder's samples: ``[]``
      for one run, ``[M]`` for a stack.
    encoder: encoder gradients (descent direction).
    decoder: decoder gradients; prior: the prior logits' gradient (one tensor).
    state: gradients of the estimator's loss w.r.t. its state variables (``None``
      without state); state_loss: that loss.
    estimates: the per-layer estimates ``g_l`` ``[*batch, D]``.
  """

  loss: tf.Tensor
  encoder: list[tf.Tensor]
  decoder: list[tf.Tensor]
  prior: tf.Tensor | None
  state: list[tf.Tensor] | None
  state_loss: tf.Tensor | None
  estimates: list[tf.Tensor]


def _logit(u):
  return tf.math.log(u) - tf.math.log1p(-u)


class LayerObjective(Objective):
  """``f_l`` of a layered model: a candidate for layer ``l`` -> the ELBO of its completed configuration."""

  def __init__(self, model, x, forward_bits, forward_logits, layer, noise, share_upper_noise):
    self.model, self.x, self.layer = model, x, layer
    self.below = list(forward_bits[:layer])
    # Every encoder logit of a log q term is held constant (PROTOCOL.md section 1); layer l's own too.
    self.fixed_logits = [tf.stop_gradient(a) for a in forward_logits[: layer + 1]]
    self.num_upper = model.num_layers - layer - 1
    self.upper_noise = noise.split(max(self.num_upper, 1))[: self.num_upper]
    self.share_upper_noise = share_upper_noise
    self.fn = self._hard

  @tf.autograph.experimental.do_not_convert
  def _uniforms(self, candidates):
    """One U(0, 1) per upper layer: shared by the candidates ``[..., B, D]``, or one each ``[S, ..., B, D]``."""
    if self.share_upper_noise:
      return [n.uniform(candidates[0], open_interval=True) for n in self.upper_noise]
    return [n.uniform(candidates[0], candidates.shape[0], open_interval=True) for n in self.upper_noise]

  @tf.autograph.experimental.do_not_convert
  def _hard(self, candidates, uniforms=None):
    # The upper layers' logits hold the encoder's parameters constant but stay functions of
    # the candidate: f's gradient in the candidate (Double CV, RODEO) includes their log q
    # terms, as in the RODEO code's layered estimators.
    uniforms = self._uniforms(candidates) if uniforms is None else uniforms
    bits, upper_logits = self.model.complete(self.x, self.below + [candidates], self.layer + 1, uniforms, frozen=True)
    return self.model.elbo(self.x, bits, self.fixed_logits + upper_logits)

  @tf.autograph.experimental.do_not_convert
  def _relaxed(self, candidates, uniforms, temperature):
    bits, logits = self.below + [candidates], list(self.fixed_logits)
    for j, u in zip(range(self.layer + 1, self.model.num_layers), uniforms):
      a = self.model.layer_logits(j, bits[-1], self.x, frozen=True)  # differentiable in the relaxed bits below
      bits.append(tf.sigmoid((a - _logit(u)) / temperature[..., tf.newaxis]))
      logits.append(a)
    return self.model.elbo(self.x, bits, logits)

  def __call__(self, bits, relaxed=None, temperature=None):
    if relaxed is None:
      return self._hard(bits)
    both = tf.concat([bits, relaxed], axis=0)
    uniforms = self._uniforms(both)
    num_hard = bits.shape[0]
    part = (lambda us, s: us) if self.share_upper_noise else (lambda us, s: [u[s] for u in us])
    return tf.concat(
      [
        self._hard(bits, part(uniforms, slice(None, num_hard))),
        self._relaxed(relaxed, part(uniforms, slice(num_hard, None)), temperature),
      ],
      axis=0,
    )


@tf.autograph.experimental.do_not_convert
def _forward_sample(model, x, logits0, noise):
  """One ancestral sample ``b ~ q(b | x)``: (bits, logits) per layer; layer 0's logits given."""
  layer_noise = noise.split(model.num_layers)
  bits, logits = [], [logits0]
  for l in range(model.num_layers):
    if l > 0:
      logits.append(model.layer_logits(l, bits[-1], x))
    bits.append(tf.stop_gradient(tf.cast(layer_noise[l].uniform(logits[l]) < tf.sigmoid(logits[l]), tf.float32)))
  return bits, logits


def effective_decoder_sample(estimator, options, num_layers=1):
  """The samples that train the decoder, as the step does it: an estimator may fix its own
  (``Estimator.decoder_sample``), and layered models train on their forward sample."""
  if num_layers > 1:
    return "independent"
  return estimator.decoder_sample or options.decoder_sample


def effective_decoder_reduction(estimator, options):
  """The decoder loss's batch reduction the step uses (``as_reference`` resolved)."""
  if options.decoder_reduction == "as_reference":
    return estimator.reference_decoder_reduction
  return options.decoder_reduction


@tf.autograph.experimental.do_not_convert
def _reduce_batch(values, reduction):
  return tf.reduce_sum(values, axis=-1) if reduction == "sum" else tf.reduce_mean(values, axis=-1)


def step_gradients(model, estimator, x, noise, states=None, options=StepOptions(), decoder=True, train_state=True):
  """One estimate of every gradient of a step at the binarised batch ``x`` (see the module docstring).

  Args:
    model: a ``models.BernoulliVAE`` (or anything with its interface; the toy problem).
    estimator: a registered ``Estimator``.
    x: ``[B, P]`` (stacked runs: ``[M, B, P]``, one batch per member).
    noise: the step's estimator noise (a ``Noise`` with ``fold_in``; per member when stacked).
    states: one estimator state per stochastic layer, or ``None`` for estimators without.
    options: ``StepOptions``.
    decoder: ``False`` computes the encoder gradient only (the variance basket).
    train_state: ``False`` skips the state's gradients (the state is used, not trained).

  Returns:
    ``StepGradients``.
  """
  # Autograph converts this function, so that it converts the plugin code it calls (the
  # estimator and its state's loss may use Python control flow on tensors), but not the
  # step's own helpers, which have none: converting the whole step cost ~0.8 CPU-s in every
  # process that traces one.
  step = _Step(model, estimator, x, noise, states, options, decoder, train_state)
  with step.state_tape():  # the estimator's own parameters learn through the estimate
    with step.tape():
      outputs = [estimator.fn(*args, **kwargs) for args, kwargs in step.estimator_calls()]
      step.losses(outputs)
    if step.trainable is not None:
      step.state_loss = step.trainable.loss(step.state_loss_inputs())
  return step.gradients()


class _Step:
  """The parts of ``step_gradients`` around the plugin code it calls."""

  def __init__(self, model, estimator, x, noise, states, options, decoder, train_state):
    self.model, self.estimator, self.x, self.noise, self.states = model, estimator, x, noise, states
    self.options, self.decoder = options, decoder
    self.L = model.num_layers
    if self.L > 1 and estimator.bound_estimator:
      raise ValueError(
        f"layered models train one single-sample estimate per layer; {estimator.name} estimates a multi-sample bound"
      )
    self.batch_size = tf.cast(tf.shape(x)[-2], tf.float32)
    self.encoder_vars = list(model.encoder_variables)
    self.decoder_vars = list(model.decoder_variables)
    self.prior = getattr(model, "prior_logits", None)
    self.trainable = estimator.trainable if (states is not None and train_state) else None
    # Layered models train decoder and prior on their forward sample.
    self.mode = effective_decoder_sample(estimator, options, self.L)
    self.needs_forward = self.L > 1 or (decoder and self.mode == "independent")
    self.state_loss = None

  @tf.autograph.experimental.do_not_convert
  def state_tape(self):
    """The outer tape, opened only for an estimator with trainable state (else a null context)."""
    self._state_tape = tf.GradientTape() if self.trainable is not None else None
    return self._state_tape if self._state_tape is not None else contextlib.nullcontext()

  @tf.autograph.experimental.do_not_convert
  def tape(self):
    """The step's persistent tape: encoder, decoder and prior gradients."""
    self._tape = tf.GradientTape(persistent=True)
    return self._tape

  @tf.autograph.experimental.do_not_convert
  def estimator_calls(self):
    """``(args, kwargs)`` of the estimator's call for each stochastic layer (inside the tapes)."""
    model, estimator, x, noise, options = self.model, self.estimator, self.x, self.noise, self.options
    self.logits0 = logits0 = model.layer_logits(0, None, x)
    if self.needs_forward:
      self.forward_bits, self.forward_logits = _forward_sample(model, x, logits0, noise.fold_in(streams.FORWARD_SAMPLE))
    else:
      self.forward_bits, self.forward_logits = None, [logits0]
    calls = []
    for l in range(self.L):
      layer_noise = noise if l == 0 else noise.fold_in(streams.LAYER + l)
      if self.L == 1:
        # A multi-sample bound keeps f's dependence on the encoder (the direct term).
        f_logits = logits0 if estimator.bound_estimator else tf.stop_gradient(logits0)
        elbo = functools.partial(model.elbo, x, logits=f_logits)  # model.elbo is not converted
        reuses_values = self.decoder and self.mode == "k_independent" and not estimator.bound_estimator
        objective = SampleWiseObjective(elbo) if reuses_values else Objective(elbo)
      else:
        objective = LayerObjective(
          model,
          x,
          self.forward_bits,
          self.forward_logits,
          l,
          noise.fold_in(streams.COMPLETION + l),
          options.share_upper_noise,
        )
      self.objective = objective
      context = model.estimator_context(l, x, self.forward_bits, options.control_variate_input)
      state = None if self.states is None else self.states[l]
      calls.append(((objective, self.forward_logits[l], layer_noise), dict(state=state, context=context)))
    return calls

  @tf.autograph.experimental.do_not_convert
  def losses(self, outputs):
    """The reported loss and the decoder's loss at the samples ``decoder_sample`` names (inside the tape)."""
    model, estimator, x = self.model, self.estimator, self.x
    if estimator.bound_estimator:
      objective_values = outputs[0].objective_value()  # the bound at the estimator's samples
    elif not self.decoder:
      objective_values = None
    elif self.mode == "independent":
      objective_values = model.elbo(x, self.forward_bits, [tf.stop_gradient(a) for a in self.forward_logits])
    elif self.mode == "estimator":
      objective_values = outputs[0].objective_value()
    else:  # k_independent: the estimator's own independent draws, topped up with fresh ones
      objective_values = _k_independent_elbo(model, x, self.logits0, estimator, outputs[0], self.objective, self.noise)
    if objective_values is not None:
      self.loss = -tf.reduce_mean(objective_values, axis=-1)  # [] or [M]: the reported loss
      self.total_loss = tf.reduce_sum(self.loss)  # members are independent: their sum
      reduction = effective_decoder_reduction(estimator, self.options)
      self.decoder_loss = tf.reduce_sum(-_reduce_batch(objective_values, reduction))
    else:
      self.loss = self.total_loss = self.decoder_loss = None
    self.estimates = [out.grad for out in outputs]

  @tf.autograph.experimental.do_not_convert
  def _encoder_grads(self):
    backprop = self.estimates if self.trainable is not None else [tf.stop_gradient(g) for g in self.estimates]
    encoder_grads = self._tape.gradient(
      self.forward_logits[: self.L], self.encoder_vars, output_gradients=[-g / self.batch_size for g in backprop]
    )
    if self.estimator.bound_estimator:  # plus the direct term: the bound's own dependence on the encoder
      direct = self._tape.gradient(self.total_loss, self.encoder_vars)
      encoder_grads = [g + d for g, d in zip(encoder_grads, direct)]
    return encoder_grads

  @tf.autograph.experimental.do_not_convert
  def state_loss_inputs(self):
    """What the state's loss is given, in its ``loss_space`` (on the state's tape: differentiable in the state)."""
    self.encoder_grads = self._encoder_grads()
    if self.trainable.loss_space == "logits":
      return self.estimates
    return [g * self.batch_size for g in self.encoder_grads]  # the reference's batch-summed objective

  @tf.autograph.experimental.do_not_convert
  def gradients(self):
    """``StepGradients`` (after the tapes are closed)."""
    encoder_grads = self.encoder_grads if self.trainable is not None else self._encoder_grads()
    state_grads = state_loss = None
    if self.trainable is not None:
      state_loss = self.state_loss
      state_grads = self._state_tape.gradient(state_loss, [v for s in self.states for v in s.trainable_variables])
    decoder_grads, prior_grad = [], None
    if self.decoder:
      targets = self.decoder_vars + ([self.prior] if self.prior is not None else [])
      grads = self._tape.gradient(self.decoder_loss, targets) if targets else []
      decoder_grads = grads[: len(self.decoder_vars)]
      prior_grad = grads[len(self.decoder_vars)] if self.prior is not None else None
    del self._tape
    return StepGradients(
      loss=self.loss,
      encoder=[tf.stop_gradient(g) for g in encoder_grads],
      decoder=decoder_grads,
      prior=prior_grad,
      state=state_grads,
      state_loss=state_loss,
      estimates=[tf.stop_gradient(g) for g in self.estimates],
    )


class SampleWiseObjective(Objective):
  """``f`` evaluated one leading sample at a time, each call's per-sample values kept.

  Under ``decoder_sample=k_independent`` the decoder trains on the ELBOs the estimator
  already computed at its independent draws. Backpropagated through a slice of one
  batched evaluation, that gradient would run the decoder's backward pass over every
  sample of the batch (zeros for the antithetic partners); through per-sample
  evaluations it visits only the samples the decoder trains on. Same values, same
  forward FLOPs.
  """

  def __init__(self, fn):
    super().__init__(fn)
    self._calls = []  # (the values returned, [the values of each leading sample])

  def __call__(self, bits, relaxed=None, temperature=None):
    points = bits if relaxed is None else tf.concat([bits, relaxed], axis=0)
    num = points.shape[0]
    if num is None:  # not known while tracing: one batched evaluation
      return self.fn(points)
    per_sample = [self.fn(points[s : s + 1]) for s in range(num)]
    values = per_sample[0] if num == 1 else tf.concat(per_sample, axis=0)
    self._calls.append((values, per_sample))
    return values

  def leading_values(self, f_values, num):
    """The first ``num`` samples' values as separate tensors, if ``f_values`` is what a call returned."""
    for values, per_sample in self._calls:
      if values is f_values and len(per_sample) >= num:
        return per_sample[:num]
    return None


@tf.autograph.experimental.do_not_convert
def _k_independent_elbo(model, x, logits0, estimator, output, objective, noise):
  """ELBOs ``[*batch]`` meaned over ``K = estimator.samples`` independent samples from q(b|x).

  The estimator's own independent draws (``output.num_independent`` leading ``bits``)
  come first, and their ELBOs are the values the estimator already computed (``f``
  holds only the encoder's logits constant, so they are differentiable in the decoder):
  no second decoder pass at the same bits. Fresh draws from their own stream make up the
  rest (for DisARM, the pairs' second halves are never decoder samples, as in the RODEO
  reference).
  """
  num = estimator.samples
  reused = min(num, output.num_independent)
  fixed_logits = tf.stop_gradient(logits0)
  parts = []
  if reused:
    leading = objective.leading_values(output.f_values, reused) if isinstance(objective, SampleWiseObjective) else None
    parts += leading if leading is not None else [output.f_values[:reused]]
  if num > reused:
    u = noise.fold_in(streams.DECODER_TOP_UP).uniform(logits0, num - reused)
    parts.append(model.elbo(x, tf.cast(u < tf.sigmoid(fixed_logits), tf.float32), fixed_logits))
  values = parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)
  return tf.reduce_mean(values, axis=0)
