"""The binding warm start: teach a policy's image path which object has the remembered colour.

On RememberColor with five or more cubes the whole policy does not learn the choice from its own
training (stops 34-36 of issue 17: the first move within 20 degrees of the expert's heading in 0.40
of held-out RememberColor5 episodes after 80,000 decisions). Cut out of the policy, the same decision
is learned in minutes: each demonstration gives one sample, the **memory** (the cue frame and the
last frame before the arm moves), the **query** (the first frame the arm moves, cubes in view) and
the **target** (the demonstration's last tip x, y: above the cued cube). The policy's own modules
score it, so what is learned is the policy's: its image encoder encodes the three frames, its bank's
perceptual stream (cross-attention + gate) reads the two stored frames with the query's tokens, and
its chunk prior's readout (``SpatialReadout``) pools the fused tokens; a small regression head,
thrown away afterwards, predicts the target from the pooled features, and a cross-entropy trains the
readout's first head to put its weight on the image token the cued cube projects into (the pointer
loss of ``MemoryVLAConfig.pointer_loss_weight``, the same targets: :func:`~memstream.embodied.policies.memvla.mikasa.end_point_tokens`).
Without that cross-entropy nothing is learned in 3,000 steps (``benchmarks/MIKASA.md``).

Measured on RememberColor5: ``vla-train --binding-warmup 3000 --pointer-loss 1`` (10 minutes of warm
start on one core, then 2,000 training steps) succeeds in 0.52 of 100 simulator episodes, 0.01 with
the same settings and no warm start; held-out first moves head within 20 degrees of the expert's in
0.70 of episodes, 0.12 with the bank wiped at the move (stop 38, ``benchmarks/MIKASA.md``). Where
objects share image tokens the target names a token, not an object: on RememberColor9 (the cued cube
shares its token in 0.39 of episodes) the warm start points right in 0.21 of its demonstrations; with
``--image-crop 50 40 48`` (``MemoryVLAConfig.image_crop``: 0.05 shared) in 0.985, and the policy
succeeds in 0.97 of 100 episodes (RememberColor5: 1.00; stop 39). The same
path in ``benchmarks/diag_mikasa_binding.py`` chooses the cued cube in 0.88 of held-out episodes
after 3,000 steps.

``memstream vla-train --binding-warmup N`` runs :func:`binding_warmup` before the policy's training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from memstream.embodied.envs.types import EpisodeDataset
from memstream.embodied.policies.memvla.modeling_memvla import MemoryVLAPolicy, crop_images, random_shift
from memstream.streaming.errors import ConfigError
from torch import nn

CHOICE_M = 0.04  # a predicted end point this close to the demonstration's picks its cube (RememberColor's stand 8-10 cm apart)
WARMED_MODULES = ("perceptual_encoder", "memory.perceptual", "prior.readout")  # what the warm start trains


def binding_samples(data: EpisodeDataset) -> dict[str, torch.Tensor]:
    """One sample per episode: ``memory`` uint8 ``(E, 2, H, W, 3)`` (the first frame, where the cue
    shows, and the last frame before the arm moves), ``query`` ``(E, H, W, 3)`` (the first moving
    frame) and ``goal`` float ``(E, 2)`` (the tip's x, y at the last frame)."""
    from memstream.embodied.policies.memvla.mikasa import first_move_frame

    memory, query, goal = [], [], []
    for episode in range(data.num_episodes):
        low, high = int(data.episode_bounds[episode]), int(data.episode_bounds[episode + 1])
        first = min(max(first_move_frame(data, episode), 1), high - low - 1)  # an episode that never / at once moves
        memory.append(data.images[[low, low + first - 1]])
        query.append(data.images[low + first])
        goal.append(data.states[high - 1, :2])
    return {"memory": torch.from_numpy(np.stack(memory)), "query": torch.from_numpy(np.stack(query)),
            "goal": torch.from_numpy(np.stack(goal)).float()}


class BindingModel(nn.Module):
    """The decision path: ``encoder`` (image -> ``(B, N, D)`` tokens), ``stream`` (a bank's
    :class:`~memstream.embodied.bank.layers.MemoryStream`: the query's tokens read the stored frames'
    and the gate fuses them) and ``readout`` (:class:`~memstream.embodied.policies.memvla.action_head.SpatialReadout`),
    with a regression head of its own on the readout's features. The three modules are held, not
    copied: training this trains them wherever else they are used (a policy's). ``crop`` is the
    policy's ``image_crop``: the images are cut and resized as the policy does before its encoder."""

    def __init__(self, encoder: nn.Module, stream: nn.Module, readout: nn.Module, hidden: int = 256,
                 crop: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.encoder, self.stream, self.readout, self.crop = encoder, stream, readout, crop
        self.head = nn.Sequential(nn.Linear(readout.out_dim, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.pointer: torch.Tensor | None = None  # the last forward's first readout head (B, N)

    def forward(self, memory: torch.Tensor, query: torch.Tensor, shift: int = 0) -> torch.Tensor:
        """``memory`` uint8 ``(B, S, H, W, 3)``, ``query`` ``(B, H, W, 3)`` -> the normalised end point ``(B, 2)``."""
        batch, frames = memory.shape[:2]
        past = crop_images(memory.flatten(0, 1).movedim(-1, -3).float() / 255.0, self.crop)
        now = crop_images(query.movedim(-1, -3).float() / 255.0, self.crop)
        if shift:  # the policy's training augmentation, each image its own offset
            past, now = random_shift(past, shift), random_shift(now, shift)
        current = self.encoder(now)
        stored = self.encoder(past).unflatten(0, (batch, frames))
        # the stored frames' step index 0, 1 .. as in the diagnostic that found the recipe; the policy's
        # bank holds the same two frames (among others) at their frame indices
        steps = torch.arange(frames, dtype=torch.float32).expand(batch, frames)
        fused, _, _ = self.stream(current, stored, steps, torch.ones(batch, frames, dtype=torch.bool))
        self.pointer = self.readout.weights(fused)[..., 0]
        return self.head(self.readout(fused))


def policy_binding_model(policy: MemoryVLAPolicy) -> BindingModel:
    """A :class:`BindingModel` on ``policy``'s own image encoder, perceptual bank stream and chunk-prior
    readout (the modules of :data:`WARMED_MODULES`).

    Raises:
        ConfigError: the policy has no bank with a perceptual stream or no chunk-prior readout.
    """
    memory = getattr(policy, "memory", None)
    stream = getattr(memory, "perceptual", None) if memory is not None else None
    readout = getattr(policy.prior, "readout", None) if policy.prior is not None else None
    if stream is None or readout is None:
        raise ConfigError("the binding warm start trains the bank's perceptual stream and the chunk prior's readout; "
                          "this policy has " + ("no bank" if stream is None else "no prior readout"),
                          "Train the bank variant with --chunk-prior --prior-readout 4")
    return BindingModel(policy.perceptual_encoder, stream, readout, crop=policy.config.image_crop)


def binding_warmup(policy: MemoryVLAPolicy, data: EpisodeDataset, pointer_tokens: np.ndarray, steps: int,
                   batch: int = 32, lr: float = 1e-3, pointer_weight: float = 1.0, seed: int = 0,
                   log: Callable[[str], None] | None = None, log_every: int = 500) -> dict[str, Any]:
    """Train ``policy``'s image encoder, perceptual bank stream and chunk-prior readout on the decision
    alone (see the module docstring) for ``steps`` AdamW steps of ``batch`` demonstrations, with the
    policy's image shift; the rest of the policy is not touched and the regression head is dropped.

    Args:
        pointer_tokens: ``(N,)`` per demonstration the image token of its end point, -1 outside the
            image (:func:`~memstream.embodied.policies.memvla.mikasa.end_point_tokens` at the policy's grid).
        log: called with a progress line every ``log_every`` steps and at the end.

    Returns:
        The record: steps, batch, lr, pointer weight, seconds, the last loss, and on up to 200 of the
        demonstrations (no augmentation) ``choice`` (the predicted end point within 4 cm of the
        demonstration's) and ``pointer_on_target`` (the first head's largest weight on the end point's token).

    Raises:
        ConfigError: no steps, fewer than two demonstrations, targets that do not match the data or
            the policy's token grid, or a policy without the modules (:func:`policy_binding_model`).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"the binding warm start needs steps >= 1, got {steps!r}", "Pass e.g. 3000")
    if data.num_episodes < 2:
        raise ConfigError(f"the binding warm start needs at least 2 demonstrations, got {data.num_episodes}",
                          "Collect more demonstrations")
    model = policy_binding_model(policy)
    tokens = torch.as_tensor(np.asarray(pointer_tokens), dtype=torch.long)
    cells = int(model.readout.coords.shape[0])
    if tokens.shape != (data.num_episodes,) or int(tokens.max()) >= cells or int(tokens.min()) < -1:
        raise ConfigError(f"the binding warm start needs one end-point token in -1 .. {cells - 1} per demonstration, "
                          f"got shape {tuple(tokens.shape)}", "Pass end_point_tokens(data, camera, the policy's grid)")
    if not (tokens >= 0).any():
        raise ConfigError("no demonstration's end point falls inside the image: the warm start has nothing to point at",
                          "Check the camera parameters in the folders' meta/info.json")
    samples = binding_samples(data)
    mean, std = samples["goal"].mean(0), samples["goal"].std(0).clamp_min(1e-6)
    shift = int(policy.config.augment_shift)
    generator = torch.Generator().manual_seed(seed)
    model.head.apply(lambda m: _reset(m, generator))  # the head's start depends on the seed alone
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    was_training = policy.training
    model.train()
    started, loss_value, size = time.perf_counter(), float("nan"), min(batch, data.num_episodes)
    hits, aimed = 0, 0  # the first head on the end point's token, over the batches since the last log line
    torch.manual_seed(seed)  # the shift's offsets
    for step in range(1, steps + 1):
        pick = torch.as_tensor(rng.choice(data.num_episodes, size, replace=False))
        out = model(samples["memory"][pick], samples["query"][pick], shift=shift)
        loss = (out - (samples["goal"][pick] - mean) / std).pow(2).mean()
        if pointer_weight:
            loss = loss + pointer_weight * nn.functional.nll_loss(model.pointer.clamp_min(1e-8).log(), tokens[pick],
                                                                  ignore_index=-1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
        inside = tokens[pick] >= 0
        hits += int((model.pointer.detach().argmax(dim=1) == tokens[pick])[inside].sum())
        aimed += int(inside.sum())
        if log is not None and (step % log_every == 0 or step == steps):
            log(f"binding warm start step {step}/{steps} loss {loss_value:.4f}, first head on the end point's token in "
                f"{hits / max(aimed, 1):.2f} of the last {aimed} training samples "
                f"({step / (time.perf_counter() - started):.2f} steps/s)")
            hits, aimed = 0, 0
    seconds = time.perf_counter() - started
    scored = _score(model, samples, tokens, mean, std, limit=200)
    policy.train(was_training)
    return {"steps": steps, "batch": size, "lr": lr, "pointer_weight": pointer_weight, "seed": seed,
            "seconds": round(seconds, 1), "final_loss": round(loss_value, 4), "modules": list(WARMED_MODULES), **scored}


def _reset(module: nn.Module, generator: torch.Generator) -> None:
    if isinstance(module, nn.Linear):
        bound = 1.0 / module.in_features ** 0.5
        with torch.no_grad():
            module.weight.uniform_(-bound, bound, generator=generator)
            module.bias.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def _score(model: BindingModel, samples: dict[str, torch.Tensor], tokens: torch.Tensor, mean: torch.Tensor,
           std: torch.Tensor, limit: int) -> dict[str, Any]:
    model.eval()
    count = min(limit, len(samples["goal"]))
    predicted, pointed = [], []
    for start in range(0, count, 64):
        stop = min(start + 64, count)
        predicted.append(model(samples["memory"][start:stop], samples["query"][start:stop]) * std + mean)
        pointed.append(model.pointer.argmax(dim=1))
    error = (torch.cat(predicted) - samples["goal"][:count]).norm(dim=1)
    inside = tokens[:count] >= 0
    hits = (torch.cat(pointed) == tokens[:count])[inside]
    return {"scored_demonstrations": count, "choice": round(float((error < CHOICE_M).float().mean()), 3),
            "error_cm": round(float(error.mean()) * 100, 2),
            "pointer_on_target": round(float(hits.float().mean()), 3) if len(hits) else None}
