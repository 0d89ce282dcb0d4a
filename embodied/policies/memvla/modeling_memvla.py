"""A memory-conditioned robot policy: MemoryVLA's perceptual-cognitive bank in front of a
flow-matching action expert, with LeRobot's policy interface.

Per control step (``select_action``): encode the frame into perceptual tokens ``(B, N, Cp)`` and a
cognitive token ``(B, 1, Dc)``; read and fuse the episode's bank (``memstream.embodied.bank``); store the
step; when the action queue is empty, sample an action chunk from the fused tokens and queue its
first ``n_action_steps`` actions (or, with ``temporal_ensemble_coeff``, predict every step and
execute ACT's weighted average of the chunks' predictions for it). The bank sees **every** frame,
also those whose action comes from the queue, so a cue shown between two predictions is not missed.

LeRobot surface (duck-typed; ``lerobot`` itself needs Python >= 3.12 and is not imported):
``config_class``, ``name``, ``reset()``, ``select_action(batch)``, ``predict_action_chunk(batch)``,
``forward(batch) -> (loss, info)``, ``get_optim_params()``, ``save_pretrained`` /
``from_pretrained`` (``config.json`` + ``model.safetensors``). Normalisation of states and actions
(mean / std from ``dataset_stats``) lives in the policy as buffers, so a saved policy carries it.

Batches: observations with LeRobot keys (``observation.image`` as uint8 ``(B, H, W, 3)`` from our
envs or float ``(B, 3, H, W)`` in [0, 1] from a LeRobot dataset, ``observation.state``, ``task``),
plus ``episode_start`` (bool ``(B,)``: slots whose episode begins here; their banks are cleared)
and ``frame_index`` (the bank's timestep). Training batches add a time axis (see ``forward``).
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from memstream.embodied.bank import BankReadout, PerceptualCognitiveMemory
from memstream.embodied.policies.memvla.action_head import ChunkPrior, DiscreteActionHead, FlowMatchingHead
from memstream.embodied.policies.memvla.configuration_memvla import MemoryVLAConfig
from memstream.embodied.policies.memvla.encoders import HFVisionEncoder, PatchEncoder, SmallCNNEncoder, TaskStateEncoder, VideoLLMCognitiveEncoder
from memstream.streaming.errors import MemstreamError

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """``images (N, C, H, W)`` each translated by its own random integer offset in [-pad, pad] per axis,
    the border pixels repeated into the gap (DrQ's augmentation)."""
    n, _, height, width = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=images.device)
    rows = (torch.arange(height, device=images.device)[None] + dy)[:, :, None]  # (N, H, 1)
    cols = (torch.arange(width, device=images.device)[None] + dx)[:, None, :]  # (N, 1, W)
    return padded[torch.arange(n, device=images.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def crop_images(images: torch.Tensor, crop: tuple[int, int, int] | None) -> torch.Tensor:
    """``images (..., C, H, W)`` float: the ``crop = (top, left, size)`` square of each, resized back to
    ``H x W`` (bilinear; ``MemoryVLAConfig.image_crop``); the images themselves when ``crop`` is None."""
    if crop is None:
        return images
    top, left, size = crop
    height, width = images.shape[-2:]
    window = images[..., top:top + size, left:left + size]
    if (size, size) == (height, width):
        return window
    flat = window.reshape(-1, *window.shape[-3:])
    resized = nn.functional.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*images.shape[:-2], height, width)


def rotate_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """``images (B, ..., 3, H, W)`` in [0, 1], each sample's RGB cube rotated about its grey axis by
    ``turns (B,)`` of a full circle: a hue rotation that keeps greys and brightness, and maps red to
    green to blue at each third of a turn (then the channels are permuted exactly). Pixels of equal
    colour stay equal; colours rotated out of the cube are clipped to it. One 3x3 matrix per sample
    (Rodrigues' formula), so it costs a small fraction of a training step."""
    angle = 2 * math.pi * turns.to(images)
    axis = images.new_full((3,), 1 / math.sqrt(3))
    cross = images.new_tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3)  # [axis]x
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    rotation = cos * torch.eye(3).to(images) + sin * cross + (1 - cos) * torch.outer(axis, axis)  # (B, 3, 3)
    flat = images.reshape(images.shape[0], -1, 3, *images.shape[-2:])
    return torch.einsum("bij,btjhw->btihw", rotation, flat).clamp(0.0, 1.0).reshape(images.shape)


class TemporalEnsembler:
    """ACT's temporal ensembling (Zhao et al. 2023, Algorithm 2), kept per batch slot.

    Each step takes a new chunk ``(B, K, A)`` (its action k is meant for k steps ahead) and returns
    the action for now: the average of the predictions every chunk so far made for this step,
    weighted ``exp(-coeff * i)`` with i = 0 the oldest. It keeps, per future step, the running
    weighted mean and the log of the weights' total (so a large ``|coeff|`` does not overflow), O(K A)
    a step; a slot whose episode starts forgets its earlier chunks.

    Example:
        >>> ens = TemporalEnsembler(0.0, chunk_size=2)
        >>> ens.update(torch.tensor([[[1.0], [3.0]]])).tolist()  # only this chunk's first action
        [[1.0]]
        >>> ens.update(torch.tensor([[[5.0], [7.0]]])).tolist()  # (3 + 5) / 2
        [[4.0]]
    """

    def __init__(self, coeff: float, chunk_size: int) -> None:
        self.coeff, self.chunk_size = float(coeff), int(chunk_size)
        self.reset()

    def reset(self) -> None:
        self._mean: torch.Tensor | None = None  # (B, K, A) weighted mean of the predictions per future step
        self._log_weight: torch.Tensor | None = None  # (B, K) log of their total weight (-inf: none yet)
        self._count: torch.Tensor | None = None  # (B, K) how many chunks predicted each step

    def update(self, chunk: torch.Tensor, starts: torch.Tensor | None = None) -> torch.Tensor:
        batch, steps, dim = chunk.shape
        if steps != self.chunk_size:
            raise PolicyInputError(f"temporal ensembling expects chunks of {self.chunk_size} actions, got {steps}",
                                   "Pass chunks from the policy whose chunk_size built the ensembler")
        if self._mean is None or self._mean.shape[0] != batch or self._mean.shape[2] != dim:
            self._mean = chunk.new_zeros(batch, steps, dim)
            self._log_weight = chunk.new_full((batch, steps), -math.inf)
            self._count = torch.zeros(batch, steps, dtype=torch.long, device=chunk.device)
        elif starts is not None and bool(starts.any()):
            begin = starts.to(device=chunk.device, dtype=torch.bool)
            self._mean = self._mean.masked_fill(begin[:, None, None], 0.0)
            self._log_weight = self._log_weight.masked_fill(begin[:, None], -math.inf)
            self._count = self._count.masked_fill(begin[:, None], 0)
        log_new = -self.coeff * self._count.to(chunk.dtype)
        total = torch.logaddexp(self._log_weight, log_new)
        share = torch.exp(log_new - total)  # the new prediction's part of the weight, 1 for the first
        self._mean = self._mean + share[..., None] * (chunk - self._mean)
        self._log_weight, self._count = total, self._count + 1
        action = self._mean[:, 0]
        self._mean = torch.cat([self._mean[:, 1:], chunk.new_zeros(batch, 1, dim)], dim=1)
        self._log_weight = torch.cat([self._log_weight[:, 1:], chunk.new_full((batch, 1), -math.inf)], dim=1)
        self._count = torch.cat([self._count[:, 1:], self._count.new_zeros(batch, 1)], dim=1)
        return action


class PolicyInputError(MemstreamError, ValueError):
    """A batch the policy cannot use (missing key, wrong image shape)."""


class MemoryVLAPolicy(nn.Module):
    """See the module docstring.

    Args:
        config: the policy's settings.
        dataset_stats: ``{"action": {"mean", "std"}, "observation.state": {"mean", "std"}}`` arrays
            for normalisation (identity when None).
        perceptual_encoder, cognitive_encoder: replace the encoders the config names (any module
            following the protocols of :mod:`memstream.embodied.policies.memvla.encoders`).

    Example::

        policy = MemoryVLAPolicy(MemoryVLAConfig(), dataset_stats=stats)
        policy.reset()
        obs = env.reset()
        while True:
            obs, *_ = env.step(policy.select_action(obs).numpy())
    """

    config_class = MemoryVLAConfig
    name = "memvla"

    def __init__(self, config: MemoryVLAConfig, dataset_stats: dict | None = None,
                 perceptual_encoder: nn.Module | None = None, cognitive_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if perceptual_encoder is None:
            if config.perceptual_encoder == "hf":
                perceptual_encoder = HFVisionEncoder(config.vision_model, config.perceptual_dim, config.perceptual_grid,
                                                     config.freeze_vision)
            elif config.perceptual_encoder == "patch":
                perceptual_encoder = PatchEncoder(config.input_features[config.image_key][-1], config.perceptual_dim,
                                                  config.perceptual_grid, config.perceptual_pool, config.perceptual_subgrid,
                                                  config.perceptual_fine_position)
            else:
                perceptual_encoder = SmallCNNEncoder(config.input_features[config.image_key][-1], config.perceptual_dim,
                                                     config.perceptual_grid, config.perceptual_pool, config.perceptual_subgrid)
        self.perceptual_encoder = perceptual_encoder
        if cognitive_encoder is None and config.cognitive_encoder == "video_llm":
            cognitive_encoder = VideoLLMCognitiveEncoder(config.language_model, config.cognitive_dim)
        self.cognitive_encoder = cognitive_encoder or TaskStateEncoder(
            perceptual_encoder.dim, perceptual_encoder.num_tokens, config.state_dim, config.cognitive_dim, config.vocab_buckets)
        cp, dc = self.perceptual_encoder.dim, self.cognitive_encoder.dim
        self.memory = PerceptualCognitiveMemory(cp, dc, config.bank, config.memory_streams) if config.memory == "bank" else None
        head = DiscreteActionHead if config.action_head == "discrete" else FlowMatchingHead
        self.head = head(config.num_discrete_actions if config.action_head == "discrete" else config.action_dim,
                         config.chunk_size, cp, dc, config.state_dim, config.hidden_dim, config.head_layers, config.head_heads,
                         film=config.head_film)
        self.prior = ChunkPrior(dc + config.state_dim, cp, self.perceptual_encoder.num_tokens, config.chunk_size,
                                config.action_dim, 2 * config.hidden_dim, config.prior_readout_heads,
                                config.prior_readout_offsets, config.prior_readout_track) if config.chunk_prior else None
        # the goal predictor is the prior's MLP with one "step" of state_dim outputs
        self.goal = ChunkPrior(dc + config.state_dim, cp, self.perceptual_encoder.num_tokens, 1, config.state_dim,
                               2 * config.hidden_dim) if config.goal_loss_weight > 0 else None
        self._register_stats(dataset_stats or {})
        self._queue: deque[torch.Tensor] = deque()
        self._ensembler: TemporalEnsembler | None = None
        # with a readout track: each slot's readout places at this frame and the track's earlier ones
        # (B, track + 1, H, 2), newest first; replaced, never changed in place (the policy server's
        # per-client views start their own from None)
        self._places: torch.Tensor | None = None

    def _register_stats(self, stats: dict) -> None:
        for key, name, dim in (("action", "action", self.config.action_dim),
                               ("observation.state", "state", self.config.state_dim)):
            entry = stats.get(key, {})
            mean = torch.as_tensor(np.asarray(entry.get("mean", np.zeros(dim))), dtype=torch.float32).reshape(dim)
            std = torch.as_tensor(np.asarray(entry.get("std", np.ones(dim))), dtype=torch.float32).reshape(dim)
            self.register_buffer(f"{name}_mean", mean)
            self.register_buffer(f"{name}_std", std.clamp(min=1e-6))

    # ------------------------------------------------------------------ LeRobot interface
    def get_optim_params(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        """Called when the environments reset: clears the action queue (or the temporal ensemble)
        and every slot's bank."""
        self._queue.clear()
        self._ensembler = None
        self._places = None
        if self.memory is not None:
            self.memory.reset()

    @torch.no_grad()
    def select_action(self, batch: dict[str, Any]) -> torch.Tensor:
        """One action per slot ``(B, A)``: observe the frame (bank read + write), and predict a new
        chunk when the queue is empty or a slot starts a new episode. With
        ``config.temporal_ensemble_coeff`` set, predict a chunk every step and return ACT's
        temporal ensemble of the chunks' actions for this step (``n_action_steps`` is not used)."""
        readout, condition = self._observe(batch)
        starts = batch.get("episode_start")
        coeff = self.config.temporal_ensemble_coeff
        if coeff is not None:
            if self._ensembler is None or self._ensembler.coeff != coeff:
                self._ensembler = TemporalEnsembler(coeff, self.config.chunk_size)
            begin = None if starts is None else torch.as_tensor(np.asarray(starts), dtype=torch.bool).reshape(-1)
            return self._ensembler.update(self._sample(readout, condition), begin)
        if starts is not None and bool(np.asarray(starts).any()):
            self._queue.clear()  # a new episode must not execute the previous one's chunk
        if not self._queue:
            chunk = self._sample(readout, condition)
            self._queue.extend(chunk[:, : self.config.n_action_steps].unbind(1))
        return self._queue.popleft()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        """Observe the frame (the bank is updated) and return a whole chunk ``(B, K, A)``."""
        return self._sample(*self._observe(batch))

    def drop_queued_actions(self) -> None:
        """Forget the queued actions (and the temporal ensemble's earlier chunks): the next
        ``select_action`` plans afresh."""
        self._queue.clear()
        self._ensembler = None

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        """Training loss over episode-contiguous sequences.

        Args:
            batch: ``observation.image`` ``(B, T, H, W, 3)`` uint8 or ``(B, T, 3, H, W)`` float;
                ``observation.state`` ``(B, T, S)``; ``action`` ``(B, T, K, A)`` chunk targets;
                ``action_is_pad`` bool ``(B, T, K)``; ``valid`` bool ``(B, T)`` (False past an
                episode's end); ``frame_index`` ``(B, T)``; ``task`` B strings.

        Each step reads the bank built from the earlier steps of its own sequence (stored without
        gradients as in MemoryVLA, or with them when ``config.bank_gradients``); the bank is cleared
        at the start and every ``group_size`` steps.
        """
        images = self._images(batch[self.config.image_key], time_axis=True)
        batch_size, steps = images.shape[:2]
        states = self._state(batch, time_axis=True)
        if self.training and self.config.augment_shift:
            images = random_shift(images.flatten(0, 1), self.config.augment_shift).unflatten(0, (batch_size, steps))
        if self.training and self.config.augment_hue:
            # one turn per sequence: the cue and the cube that matches it keep matching colours
            turns = (2 * torch.rand(batch_size, device=images.device) - 1) * self.config.augment_hue
            images = rotate_hue(images, turns)
        if self.training and self.config.augment_state_noise and states is not None:
            states = states + self.config.augment_state_noise * torch.randn_like(states)
        tasks = list(batch["task"])
        valid = torch.as_tensor(batch["valid"], dtype=torch.bool)
        perceptual = self.perceptual_encoder(images.flatten(0, 1))
        cognitive = self.cognitive_encoder(images.flatten(0, 1), perceptual, None if states is None else states.flatten(0, 1),
                                           [t for t in tasks for _ in range(steps)])
        perceptual = perceptual.unflatten(0, (batch_size, steps))
        cognitive = cognitive.unflatten(0, (batch_size, steps))
        fused_p, fused_c = self._unroll(perceptual, cognitive, torch.as_tensor(batch["frame_index"]), valid)
        condition = fused_c.squeeze(2) if states is None else torch.cat([fused_c.squeeze(2), states], dim=-1)
        actions = torch.as_tensor(batch["action"], dtype=torch.float32)
        if self.config.action_head != "discrete":  # ids are classes, not quantities to normalise
            actions = (actions - self.action_mean) / self.action_std
        pad = torch.as_tensor(batch["action_is_pad"], dtype=torch.bool) | ~valid[..., None]
        keep = self._loss_frames(valid).flatten()
        actions, condition, fused_p, pad = (x.flatten(0, 1) for x in (actions, condition, fused_p, pad))
        every = valid.flatten()
        parts: dict[str, torch.Tensor] = {}
        if self.prior is None:
            parts["action_loss"] = self.head.loss(actions[keep], condition[keep], fused_p[keep], pad[keep])
        else:
            # the prior is a small MLP: it learns from every valid frame, the flow head from the drawn ones
            past = None
            if self.prior.track:  # each frame's readout places at the earlier frames of its episode
                places = self.prior.readout.where(fused_p).unflatten(0, (batch_size, steps))
                past = self.prior.past_places(places).flatten(0, 1)[every]
            prior = self.prior(condition[every], fused_p[every], past)
            weight = None
            if self.config.onset_loss_weight != 1.0:
                if "action_onset" not in batch:
                    raise PolicyInputError("onset_loss_weight needs the batch's 'action_onset' (B, T)",
                                           "Build the batch with episode_batch, which adds it")
                onset = torch.as_tensor(np.asarray(batch["action_onset"]), dtype=torch.bool).flatten()[every]
                weight = 1.0 + (self.config.onset_loss_weight - 1.0) * onset.float()
            parts["prior_loss"] = self.prior.loss(prior, actions[every], pad[every], weight)
            drawn = keep[every]  # keep is a subset of the valid frames
            parts["flow_loss"] = self.head.loss((actions[every] - prior.detach())[drawn], condition[keep], fused_p[keep], pad[keep])
        if self.config.pointer_loss_weight > 0:
            parts["pointer_loss"] = self.config.pointer_loss_weight * self._pointer_loss(batch, fused_p, every)
        if self.config.keypoint_loss_weight > 0:
            parts["keypoint_loss"] = self.config.keypoint_loss_weight * self._keypoint_loss(batch, fused_p, every)
        if self.goal is not None:
            if "goal_state" not in batch:
                raise PolicyInputError("goal_loss_weight > 0 needs the batch's 'goal_state' (B, S): each sequence's last state",
                                       "Build the batch with episode_batch, which adds it")
            goal = (torch.as_tensor(np.asarray(batch["goal_state"]), dtype=torch.float32).to(self.state_mean.device)
                    - self.state_mean) / self.state_std
            goal = goal[:, None].expand(batch_size, steps, -1).flatten(0, 1)[every]
            predicted = self.goal(condition[every], fused_p[every])
            parts["goal_loss"] = self.config.goal_loss_weight * self.goal.loss(predicted, goal[:, None])
        loss = sum(parts.values())
        return loss, {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items() if len(parts) > 1}}

    def _pointer_loss(self, batch: dict[str, Any], fused_p: torch.Tensor, every: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the prior readout's first head against ``batch["pointer_target"]`` over the
        valid frames that have a target (see ``MemoryVLAConfig.pointer_loss_weight``); ``fused_p``
        ``(B * T, N, Cp)``, ``every`` the valid frames ``(B * T,)``."""
        if "pointer_target" not in batch:
            raise PolicyInputError("pointer_loss_weight > 0 needs the batch's 'pointer_target' (B, T): the image token "
                                   "to look at per frame, -1 where none",
                                   "Train with the MIKASA trainer (train_with_checkpoints), which adds it")
        target = torch.as_tensor(np.asarray(batch["pointer_target"]), dtype=torch.long).to(every.device).flatten()
        if target.shape != every.shape:
            raise PolicyInputError(f"pointer_target has {target.numel()} entries for {every.numel()} frames",
                                   "Give one token index per frame, (B, T)")
        tokens = fused_p.shape[1]
        if bool((target >= tokens).any()) or bool((target < -1).any()):
            raise PolicyInputError(f"pointer_target holds indices outside -1 .. {tokens - 1} (the image tokens)",
                                   "Project onto the policy's perceptual grid (perceptual_grid x perceptual_grid)")
        chosen = every & (target >= 0)
        if not bool(chosen.any()):
            return fused_p.sum() * 0.0  # no frame with a target in this batch: no gradient, same graph
        log_weights = self.prior.readout.log_weights(fused_p[chosen])[..., 0]
        return nn.functional.nll_loss(log_weights, target[chosen].to(log_weights.device))

    def _keypoint_loss(self, batch: dict[str, Any], fused_p: torch.Tensor, every: torch.Tensor) -> torch.Tensor:
        """Mean squared distance, in token widths, between the prior readout's last head's pooled grid
        coordinates and ``batch["keypoint_target"]`` over the valid frames that have a target (see
        ``MemoryVLAConfig.keypoint_loss_weight``); ``fused_p`` ``(B * T, N, Cp)``, ``every`` ``(B * T,)``."""
        if "keypoint_target" not in batch:
            raise PolicyInputError("keypoint_loss_weight > 0 needs the batch's 'keypoint_target' (B, T, 2): the grid "
                                   "coordinates to point at per frame, NaN where none",
                                   "Train with the MIKASA trainer (train_with_checkpoints), which adds it")
        target = torch.as_tensor(np.asarray(batch["keypoint_target"]), dtype=torch.float32).to(fused_p.device)
        if target.shape[-1:] != (2,) or target[..., 0].numel() != every.numel():
            raise PolicyInputError(f"keypoint_target has shape {tuple(target.shape)} for {every.numel()} frames",
                                   "Give one (x, y) per frame, (B, T, 2), NaN where there is none")
        target = target.reshape(-1, 2)
        known = torch.isfinite(target).all(dim=1)
        if bool((target[known].abs() > 1.0 + 1e-6).any()):
            raise PolicyInputError("keypoint_target holds coordinates outside -1 .. 1 (the readout's grid)",
                                   "Convert pixels with memstream.embodied.policies.memvla.mikasa.pixels_to_grid")
        chosen = every.to(fused_p.device) & known
        if not bool(chosen.any()):
            return fused_p.sum() * 0.0  # no frame with a target in this batch: no gradient, same graph
        where = self.prior.readout.where(fused_p[chosen])[:, -1]
        return ((where - target[chosen]) / self.prior.readout.spacing).pow(2).sum(dim=1).mean()

    def _loss_frames(self, valid: torch.Tensor) -> torch.Tensor:
        """bool ``(B, T)``: the frames in the action loss, ``config.loss_frames`` valid ones per sequence
        drawn at random (all valid frames when None or when a sequence has no more)."""
        count = self.config.loss_frames
        if count is None or count >= valid.shape[1]:
            return valid
        score = torch.rand(valid.shape, device=valid.device).masked_fill(~valid, 2.0)  # invalid frames rank last
        chosen = torch.zeros_like(valid)
        chosen.scatter_(1, score.argsort(dim=1)[:, :count], True)
        return chosen & valid

    def _unroll(self, perceptual: torch.Tensor, cognitive: torch.Tensor, frame_index: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory is None:
            return perceptual, cognitive
        steps = perceptual.shape[1]
        group = self.config.group_size or steps
        fused_p, fused_c = [], []
        self.memory.store_gradients = self.config.bank_gradients and torch.is_grad_enabled()
        try:
            for t in range(steps):
                if t % group == 0:
                    self.memory.reset(batch_size=perceptual.shape[0])
                readout = self.memory(perceptual[:, t], cognitive[:, t], frame_index[:, t] % group if self.config.group_size else frame_index[:, t])
                self.memory.update(perceptual[:, t], cognitive[:, t], readout.timestep, fused=readout, active=valid[:, t])
                fused_p.append(readout.perceptual)
                fused_c.append(readout.cognitive)
        finally:
            self.memory.store_gradients = False
            self.memory.reset()  # training state must not leak into the next batch or into evaluation
        return torch.stack(fused_p, 1), torch.stack(fused_c, 1)

    # ------------------------------------------------------------------ steps
    def _observe(self, batch: dict[str, Any]) -> tuple[BankReadout | tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        images = self._images(batch[self.config.image_key], time_axis=False)
        states = self._state(batch, time_axis=False)
        tasks = batch.get("task") or [""] * images.shape[0]
        perceptual = self.perceptual_encoder(images)
        cognitive = self.cognitive_encoder(images, perceptual, states, list(tasks))
        starts = batch.get("episode_start")
        if self.memory is None:
            self._track_places(perceptual, starts)
            return (perceptual, cognitive), states
        if self.memory.episode_ids is None or len(self.memory.episode_ids) != images.shape[0]:
            self.memory.reset(batch_size=images.shape[0])
        elif starts is not None and bool(np.asarray(starts).any()):
            self.memory.reset(torch.as_tensor(np.asarray(starts), dtype=torch.bool))
        timestep = batch.get("frame_index")
        timestep = None if timestep is None else torch.as_tensor(np.asarray(timestep))
        readout = self.memory.step(perceptual, cognitive, timestep)
        self._track_places(readout.perceptual, starts)
        return readout, states

    def _track_places(self, fused: torch.Tensor, starts: Any) -> None:
        """With a readout track, push this frame's readout places (of the fused tokens ``(B, N, Cp)``)
        onto each slot's history; a slot whose episode starts here (or a new batch size) begins it
        with this place at every lag, as training's :meth:`ChunkPrior.past_places` does."""
        if self.prior is None or not self.prior.track:
            return
        where = self.prior.readout.where(fused)
        fresh = where[:, None].expand(-1, self.prior.track + 1, -1, -1)
        if self._places is None or self._places.shape[0] != where.shape[0]:
            self._places = fresh.clone()
            return
        moved = torch.cat([where[:, None], self._places[:, :-1]], dim=1)
        if starts is not None:
            begin = torch.as_tensor(np.asarray(starts), dtype=torch.bool, device=where.device).reshape(-1)
            moved = torch.where(begin[:, None, None, None], fresh, moved)
        self._places = moved

    def _sample(self, readout, states: torch.Tensor | None) -> torch.Tensor:
        perceptual, cognitive = (readout.perceptual, readout.cognitive) if isinstance(readout, BankReadout) else readout
        condition = cognitive.squeeze(1) if states is None else torch.cat([cognitive.squeeze(1), states], dim=-1)
        actions = self.head.sample(condition, perceptual, self.config.num_inference_steps,
                                   noise_scale=self.config.inference_noise)
        if self.prior is not None:
            past = self._places[:, 1:] if self.prior.track and self._places is not None else None
            actions = actions + self.prior(condition, perceptual, past)
        if self.config.action_head == "discrete":
            return actions  # int64 ids (B, K, 1)
        return actions * self.action_std + self.action_mean

    def _images(self, images: Any, time_axis: bool) -> torch.Tensor:
        """uint8 channels-last or float channels-first images -> float ``(..., 3, H, W)`` in [0, 1]."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        rank = 5 if time_axis else 4
        if x.dim() != rank:
            raise PolicyInputError(f"{self.config.image_key} must have {rank} dimensions, got shape {tuple(x.shape)}",
                                   "Give (B, H, W, 3) uint8 or (B, 3, H, W) float images (with a T axis for training)")
        if x.shape[-1] == 3 and x.shape[-3] != 3:
            x = x.movedim(-1, -3)
        if x.shape[-3] != 3:
            raise PolicyInputError(f"{self.config.image_key} has shape {tuple(x.shape)}: no RGB channel axis")
        if self.config.image_crop is not None and tuple(x.shape[-2:]) != self.config.input_features[self.config.image_key][1:]:
            raise PolicyInputError(f"{self.config.image_key} is {x.shape[-2]} x {x.shape[-1]} px, but the policy's image_crop "
                                   f"{self.config.image_crop} is in pixels of its "
                                   f"{' x '.join(map(str, self.config.input_features[self.config.image_key][1:]))} input",
                                   "Give images of the size the policy was trained on")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return crop_images(x.to(self.action_mean.device), self.config.image_crop)

    def _state(self, batch: dict[str, Any], time_axis: bool) -> torch.Tensor | None:
        if not self.config.state_dim:
            return None
        if "observation.state" not in batch:
            raise PolicyInputError("the batch has no 'observation.state'", "Add it, or build the policy without a state feature")
        state = torch.as_tensor(np.asarray(batch["observation.state"]), dtype=torch.float32).to(self.state_mean.device)
        return (state - self.state_mean) / self.state_std

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (weights and normalisation stats)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(directory / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> MemoryVLAPolicy:
        """Load a policy written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
            raise MemstreamError(f"{str(directory)!r} has no {CONFIG_NAME} and {WEIGHTS_NAME}",
                                 "Give a folder written by MemoryVLAPolicy.save_pretrained")
        config = MemoryVLAConfig(**json.loads((directory / CONFIG_NAME).read_text()))
        policy = cls(config, **kwargs)
        try:
            policy.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        except RuntimeError as exc:
            raise MemstreamError(f"the weights in {str(directory)!r} do not match its config: {str(exc).splitlines()[0]}",
                                 "Save config and weights together with save_pretrained") from exc
        return policy
