"""The action expert: a small flow-matching transformer that turns noise into an action chunk.

MemoryVLA's expert is a DiT-L diffusion head (100 DDPM steps, DDIM-10 at inference): the cognitive
token conditions it as a token of its sequence, and every block cross-attends to the perceptual
tokens (``per_attn``). This head keeps that wiring and swaps the objective for rectified flow
(as in pi0): ``x_t = (1 - t) * noise + t * action``, the network predicts the velocity
``action - noise``, and ``num_inference_steps`` Euler steps integrate t from 0 to 1. It trains in
minutes on a CPU at the default size (3 blocks, 128 channels).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of flow times ``t (B,)`` in [0, 1] -> ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 100.0 * t.float()[:, None] * freqs[None]  # t scaled to [0, 100]: periods from 0.06 to 63 in t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def masked_mean(error: torch.Tensor, pad: torch.Tensor | None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of a per-step loss ``error (B, K)`` over the steps ``pad`` (bool ``(B, K)``) does not mark
    as past the episode's end (all steps when None); ``weight (B,)`` weighs each row (a weighted mean)."""
    keep = torch.ones_like(error) if pad is None else (~pad).to(error.dtype)
    if weight is not None:
        keep = keep * weight.to(error.dtype)[:, None]
    return (error * keep).sum() / keep.sum().clamp(min=1e-12)  # nothing kept: 0


class HeadBlock(nn.Module):
    """Pre-norm self-attention over [condition; chunk], cross-attention to the perceptual tokens, MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        x = x + self.cross_attn(self.norm2(x), context, context, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class ContextFiLM(nn.Module):
    """Feature-wise modulation of the perceptual context by the condition (FiLM, as RT-1 conditions its
    image tokens on the instruction): ``context * (1 + gamma(condition)) + beta(condition)``.

    Without it the condition reaches the context only through attention: a chunk token must first
    take the cue from the condition token (self-attention) and then query the context with it
    (cross-attention). Multiplying every context token by a function of the condition makes a token
    whose content matches the condition (the cube of the remembered colour) stand out directly.
    Zero-initialised: a new head starts as the unmodulated one.
    """

    def __init__(self, condition_dim: int, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(condition_dim, 2 * dim)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, context: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``context (B, N, dim)``, ``condition (B, Dc + S)`` -> ``(B, N, dim)``."""
        gamma, beta = self.project(condition)[:, None].chunk(2, dim=-1)
        return context * (1.0 + gamma) + beta


class SpatialReadout(nn.Module):
    """Attention pooling of the perceptual tokens with one scoring MLP shared by every token.

    ``H`` heads each score every token ``(B, N, Cp) -> (B, N, H)``, take a softmax over the tokens
    and return the weighted mean of the tokens' values and of their grid coordinates (x, y in
    [-1, 1]): ``(B, H * (Cp + 2))``.

    Why, in place of the prior's flattened tokens: a flattened MLP has separate weights for every
    token place, so "the token whose colour matches the remembered one" must be learned once per
    place, from the few demonstrations that had the cube there (RememberColor3: 200 decisions over
    three or four places), and it memorises them instead. A scorer shared by all tokens learns the
    match once and the softmax turns it into a place (the pooled coordinates): the binding of a
    pointer network or a spatial softmax. Each fused token holds its own content and the memory's
    read-out for it, so the match can be scored token by token. Tested on a toy binding task: with
    the readout alone a prior finds a marked token at places no training sample had it; with the
    flattened tokens beside the readout it fits by the flattened path and does not.

    ``offsets``: each token also says, per head, where in it the thing scored is: a place ``(x, y)``
    up to one token spacing from its centre (``tanh`` of a linear map of the token, zero at
    initialisation, so the readout starts as without it), and the pooled place is the weighted mean
    of the tokens' centres moved by their offsets. Why: the pooled place of centres alone resolves a
    small object to its token, not to a place within it (MIKASA InterceptMedium's 2.5 px ball in
    16 px tokens, trained onto the ball by ``MemoryVLAConfig.keypoint_loss_weight``: 5.3 px rms,
    where a place drawn evenly over the ball's token is 6.5 px off), while a token's features can
    say where in it its patch saw the ball (CenterNet's offset head beside its heat map).
    """

    def __init__(self, dim: int, num_tokens: int, heads: int, offsets: bool = False) -> None:
        super().__init__()
        side = math.isqrt(num_tokens)
        if side * side != num_tokens or heads < 1:
            raise ValueError(f"a spatial readout needs a square token grid and >= 1 head, got {num_tokens} tokens, {heads} heads")
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, heads))
        self.value = nn.Linear(dim, dim)
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, side), torch.linspace(-1.0, 1.0, side), indexing="ij")
        self.register_buffer("coords", torch.stack([xs.flatten(), ys.flatten()], dim=-1), persistent=False)
        self.offset = nn.Linear(dim, heads * 2) if offsets else None
        if self.offset is not None:
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)
        self.spacing = 2.0 / max(side - 1, 1)  # between neighbouring token centres, in grid coordinates
        self.heads, self.out_dim = heads, heads * (dim + 2)

    def weights(self, context: torch.Tensor) -> torch.Tensor:
        """Each head's softmax over the tokens: ``(B, N, H)``."""
        return self.score(context).softmax(dim=1)

    def log_weights(self, context: torch.Tensor) -> torch.Tensor:
        """The log of :meth:`weights`, computed stably: ``(B, N, H)``."""
        return self.score(context).log_softmax(dim=1)

    def where(self, context: torch.Tensor) -> torch.Tensor:
        """Each head's pooled grid coordinates ``(B, H, 2)`` (x, y; -1 .. 1 between the corner
        tokens' centres, up to a spacing beyond with ``offsets``): the soft-argmax of its softmax, the
        part of :meth:`forward` that says where."""
        return self._where(context, self.weights(context))

    def _where(self, context: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        coords = self.coords.to(context.dtype)
        if self.offset is None:
            return torch.einsum("bnh,nc->bhc", weights, coords)
        moved = coords[None, :, None] + self.spacing * torch.tanh(self.offset(context)).unflatten(-1, (self.heads, 2))
        return torch.einsum("bnh,bnhc->bhc", weights, moved)

    def read(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s features ``(B, H * (Cp + 2))`` and :meth:`where`'s places ``(B, H, 2)``,
        from one softmax."""
        weights = self.weights(context)
        pooled = torch.einsum("bnh,bnd->bhd", weights, self.value(context))
        where = self._where(context, weights)
        return torch.cat([pooled, where], dim=-1).flatten(1), where

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.read(context)[0]


class ChunkPrior(nn.Module):
    """A deterministic regression of the action chunk, the mean the flow head adds its sample to.

    ``MLP([condition; every perceptual token, flattened]) -> (B, K, A)`` (with ``readout_heads``, a
    :class:`SpatialReadout` of the tokens in place of the flattened tokens), trained by masked MSE
    against the expert's chunk (:meth:`loss`). With a prior the flow head models the *residual*
    ``action - prior`` and a sampled chunk is ``prior + residual``.

    Why: the flow objective's target ``action - noise`` carries unit-variance noise in every entry,
    and the part of it that depends on a decision (which of three cubes) is a few entries of a
    few frames. On MIKASA RememberColor3 a flow head trained 800 steps learned the three targets'
    marginal (noise 1: 20 / 20 / 20 first moves on 60 training episodes) but not which one, not even
    with the cue's colour written into the instruction (agreement 0.33), while a classifier on the
    same patch tokens and colour reached 0.94 held out in 600 steps. The regression's gradient has
    no sampling noise, and the flattened tokens keep each token's place (attention has only the
    position embedding for that), so the decision is learned where it is cheap to learn.

    ``track``: the MLP also reads how far each readout head's place has moved since each of the
    ``track`` earlier frames (``forward``'s ``past``). Why: on MIKASA InterceptMedium the frames pin
    the rolling ball's line to about 2 mm by its eighth frame in view, while a policy whose readout
    finds the ball in every frame (the keypoint loss) still brings the hand down about 2 cm off it:
    the prior saw where the ball is, not where it goes. The fused tokens carry the bank's memory,
    but as content read per token, not as the readout's places over time; the places of earlier
    frames hand it the line as a few numbers (Deep Spatial Autoencoders' keypoint trajectories).
    """

    def __init__(self, condition_dim: int, perceptual_dim: int, num_tokens: int, chunk_size: int, action_dim: int,
                 hidden: int = 256, readout_heads: int = 0, readout_offsets: bool = False, track: int = 0) -> None:
        super().__init__()
        if track and not readout_heads:
            raise ValueError(f"a readout track of {track} frames needs readout heads")
        # readout_heads > 0: the tokens enter through a SpatialReadout instead of flattened
        self.readout = SpatialReadout(perceptual_dim, num_tokens, readout_heads, readout_offsets) if readout_heads else None
        tokens_in = self.readout.out_dim if self.readout is not None else perceptual_dim * num_tokens
        # track: each head's displacement since each of the `track` earlier frames, appended last (so a
        # prior without a track extends to one with by zero columns: see mikasa.init_from_trained)
        self.track = track
        self.mlp = nn.Sequential(nn.Linear(condition_dim + tokens_in + 2 * readout_heads * track, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, chunk_size * action_dim))
        self.chunk_size, self.action_dim = chunk_size, action_dim

    def forward(self, condition: torch.Tensor, context: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        """``condition (B, Dc + S)``, ``context (B, N, Cp)`` -> the regressed chunk ``(B, K, A)``.

        ``past (B, track, H, 2)``: with a track, the readout's places at the ``track`` earlier frames
        of the episode (lag 1 first; an episode's first frames repeat its first place), as
        :meth:`past_places` builds them; None: no motion (every earlier place is the current one).
        The MLP reads each head's displacement from each of them, in token spacings."""
        if self.readout is None:
            return self.mlp(torch.cat([condition, context.flatten(1)], dim=-1)).view(-1, self.chunk_size, self.action_dim)
        tokens, where = self.readout.read(context)
        parts = [condition, tokens]
        if self.track:
            if past is None:
                past = where[:, None].expand(-1, self.track, -1, -1)
            if past.shape != (where.shape[0], self.track, *where.shape[1:]):
                raise ValueError(f"past places of shape {tuple(past.shape)} for a track of {self.track} frames and "
                                 f"places {tuple(where.shape)}")
            parts.append(((where[:, None] - past) / self.readout.spacing).flatten(1))
        return self.mlp(torch.cat(parts, dim=-1)).view(-1, self.chunk_size, self.action_dim)

    def past_places(self, places: torch.Tensor) -> torch.Tensor:
        """``places (B, T, H, 2)``, the readout's places over an episode's frames 0 .. T-1 ->
        ``(B, T, track, H, 2)``: for each frame those of the ``track`` frames before it (lag 1 first),
        the first frame's place where the episode has none that early."""
        steps = places.shape[1]
        lags = torch.arange(1, self.track + 1, device=places.device)
        index = (torch.arange(steps, device=places.device)[:, None] - lags[None]).clamp(min=0)
        return places[:, index]

    def loss(self, prior: torch.Tensor, actions: torch.Tensor, pad: torch.Tensor | None = None,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """Masked MSE of ``prior`` against ``actions (B, K, A)`` (``pad`` as in the flow loss; ``weight
        (B,)`` weighs each chunk)."""
        return masked_mean((prior - actions).pow(2).mean(-1), pad, weight)


class FlowMatchingHead(nn.Module):
    """Predicts action chunks ``(B, K, A)`` from the fused memory tokens.

    Args:
        action_dim: A. chunk_size: K. perceptual_dim: Cp. cognitive_dim: Dc. state_dim: S.
        dim, layers, heads: the transformer's size.
        film: modulate the perceptual context by the condition (:class:`ContextFiLM`).
    """

    def __init__(self, action_dim: int, chunk_size: int, perceptual_dim: int, cognitive_dim: int, state_dim: int,
                 dim: int = 128, layers: int = 3, heads: int = 4, film: bool = False) -> None:
        super().__init__()
        self.action_in = nn.Linear(action_dim, dim)
        self.position = nn.Parameter(torch.randn(chunk_size, dim) * 0.02)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.condition = nn.Linear(cognitive_dim + state_dim, dim)
        self.context = nn.Linear(perceptual_dim, dim)
        self.film = ContextFiLM(cognitive_dim + state_dim, dim) if film else None
        self.blocks = nn.ModuleList(HeadBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.action_out = nn.Linear(dim, action_dim)
        self.dim, self.chunk_size, self.action_dim = dim, chunk_size, action_dim

    def velocity(self, noisy: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``noisy (B, K, A)``, flow time ``t (B,)``, ``condition (B, Dc + S)``, ``context (B, N, Cp)``
        -> predicted velocity ``(B, K, A)``."""
        cond = (self.condition(condition) + self.time(time_features(t, self.dim)))[:, None]
        x = torch.cat([cond, self.action_in(noisy) + self.position], dim=1)
        memory = self.context(context)
        if self.film is not None:
            memory = self.film(memory, condition)
        for block in self.blocks:
            x = block(x, memory)
        return self.action_out(self.norm(x[:, 1:]))

    def loss(self, actions: torch.Tensor, condition: torch.Tensor, context: torch.Tensor,
             pad: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching MSE of ``actions (B, K, A)``; ``pad`` bool ``(B, K)`` marks steps past the
        episode's end, left out of the loss."""
        noise = torch.randn_like(actions)
        t = torch.rand(actions.shape[0], device=actions.device)
        noisy = (1 - t)[:, None, None] * noise + t[:, None, None] * actions
        return masked_mean((self.velocity(noisy, t, condition, context) - (actions - noise)).pow(2).mean(-1), pad)

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, context: torch.Tensor, steps: int,
               generator: torch.Generator | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        """Integrate the flow from Gaussian noise times ``noise_scale`` (0: from the origin, deterministic):
        ``(B, K, A)`` actions."""
        batch = condition.shape[0]
        x = torch.randn(batch, self.chunk_size, self.action_dim, device=condition.device, generator=generator) * noise_scale
        for i in range(steps):
            t = torch.full((batch,), i / steps, device=condition.device)
            x = x + self.velocity(x, t, condition, context) / steps
        return x


class DiscreteActionHead(nn.Module):
    """Predicts chunks of discrete actions (habitat's ``stop / move_forward / turn_left / turn_right``).

    The same wiring as :class:`FlowMatchingHead` (the cognitive token and the state condition a
    token of the sequence, every block cross-attends to the perceptual tokens), with ``K`` learned
    query tokens in place of the noisy chunk and one linear classifier over ``num_actions`` per
    query: trained with cross-entropy against the expert's ids, sampled by argmax. No flow steps,
    so one forward pass per decision.

    Args:
        num_actions: n, the size of the action vocabulary. chunk_size: K. perceptual_dim: Cp.
        cognitive_dim: Dc. state_dim: S. dim, layers, heads: the transformer's size. film: as
        :class:`FlowMatchingHead`'s.
    """

    def __init__(self, num_actions: int, chunk_size: int, perceptual_dim: int, cognitive_dim: int, state_dim: int,
                 dim: int = 128, layers: int = 3, heads: int = 4, film: bool = False) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(chunk_size, dim) * 0.02)
        self.condition = nn.Linear(cognitive_dim + state_dim, dim)
        self.context = nn.Linear(perceptual_dim, dim)
        self.film = ContextFiLM(cognitive_dim + state_dim, dim) if film else None
        self.blocks = nn.ModuleList(HeadBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.logits_out = nn.Linear(dim, num_actions)
        self.chunk_size, self.num_actions = chunk_size, num_actions

    def logits(self, condition: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``condition (B, Dc + S)``, ``context (B, N, Cp)`` -> logits ``(B, K, n)``."""
        batch = condition.shape[0]
        x = torch.cat([self.condition(condition)[:, None], self.queries.expand(batch, -1, -1)], dim=1)
        memory = self.context(context)
        if self.film is not None:
            memory = self.film(memory, condition)
        for block in self.blocks:
            x = block(x, memory)
        return self.logits_out(self.norm(x[:, 1:]))

    def loss(self, actions: torch.Tensor, condition: torch.Tensor, context: torch.Tensor,
             pad: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of action ids ``actions (B, K)`` or ``(B, K, 1)`` (any number type); ``pad``
        bool ``(B, K)`` marks steps past the episode's end, left out of the loss."""
        ids = actions.reshape(actions.shape[0], self.chunk_size).long()
        error = nn.functional.cross_entropy(self.logits(condition, context).flatten(0, 1), ids.flatten(),
                                            reduction="none").view_as(ids)
        return masked_mean(error, pad)

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, context: torch.Tensor, steps: int = 1,
               generator: torch.Generator | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        """The most likely action of each chunk step: int64 ``(B, K, 1)`` (``steps``, ``generator``,
        ``noise_scale`` unused)."""
        return self.logits(condition, context).argmax(-1, keepdim=True)
