"""What the memory bank gives back, and the error it raises on input the caller controls.

Shapes use ``B`` = batch slots (parallel environments or episodes), ``N`` = perceptual tokens per
frame, ``Nc`` = cognitive tokens per frame (1 in MemoryVLA), ``Cp`` / ``Dc`` = their channel counts.
Timesteps are episode step indices (0 on an episode's first frame), not wall-clock seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memstream.streaming.errors import MemstreamError

STREAMS = ("perceptual", "cognitive")


class BankInputError(MemstreamError, ValueError):
    """Tokens, timesteps, slots or a saved bank state the bank cannot use (wrong shape, channel count,
    dtype, batch size, a slot whose episode was never started, ...). The message says how to fix it.
    Also a ``ValueError``, so callers that catch that keep working."""


@dataclass(frozen=True)
class BankReadout:
    """One step's retrieval and fusion for every batch slot.

    ``perceptual`` and ``cognitive`` are what a policy consumes in place of the raw working-memory
    tokens. A stream switched off at construction passes its current tokens through unchanged (its
    ``retrieved_*`` is the input too and its gate is None).

    Attributes:
        perceptual: ``(B, N, Cp)`` fused perceptual tokens, differentiable w.r.t. the module's
            parameters and the current tokens.
        cognitive: ``(B, Nc, Dc)`` fused cognitive tokens.
        retrieved_perceptual: ``(B, N, Cp)`` output of the retrieval blocks (the current tokens
            themselves for a slot whose bank is empty, as in MemoryVLA's openvla code).
        retrieved_cognitive: ``(B, Nc, Dc)``, likewise.
        perceptual_gate: ``(B, N, Cp)`` in (0, 1), the weight of the current tokens
            (``fused = g * current + (1 - g) * retrieved``); None with ``fusion="add"``.
        cognitive_gate: ``(B, Nc, Dc)`` or None, likewise.
        bank_lengths: int64 ``(B,)`` entries each slot's bank held when it was read (before this
            step's update).
        timestep: float32 ``(B,)`` the episode step index each slot was read at; ``update`` stores it.
    """

    perceptual: torch.Tensor
    cognitive: torch.Tensor
    retrieved_perceptual: torch.Tensor
    retrieved_cognitive: torch.Tensor
    perceptual_gate: torch.Tensor | None
    cognitive_gate: torch.Tensor | None
    bank_lengths: torch.Tensor
    timestep: torch.Tensor

    def fused(self, stream: str) -> torch.Tensor:
        """The fused tokens of ``stream`` (``"perceptual"`` or ``"cognitive"``)."""
        if stream not in STREAMS:
            raise BankInputError(f"unknown stream {stream!r}", f"Use one of {STREAMS}")
        return self.perceptual if stream == "perceptual" else self.cognitive


# ---------------------------------------------------------------------------- input checks
def check_tokens(name: str, tokens: object, channels: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """``tokens`` as a floating ``(B, N, channels)`` tensor with B, N >= 1 (same batch and device as
    ``like`` when given), else ``BankInputError``."""
    expected = f"(B, N, {channels})"
    if not isinstance(tokens, torch.Tensor):
        raise BankInputError(f"{name} must be a torch.Tensor {expected}, got {type(tokens).__name__}",
                             "Convert it with torch.as_tensor(...)")
    if tokens.dim() != 3:
        fix = f"Add the token axis: {name}.unsqueeze(1)" if tokens.dim() == 2 else f"Reshape it to {expected}"
        raise BankInputError(f"{name} must have shape {expected}, got {tuple(tokens.shape)}", fix)
    if tokens.shape[-1] != channels:
        raise BankInputError(f"{name} has {tokens.shape[-1]} channels but the bank was built for {channels}",
                             "Project the tokens to the bank's channel count or build the bank with theirs")
    if tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise BankInputError(f"{name} has shape {tuple(tokens.shape)}: it needs at least one slot and one token")
    if not tokens.is_floating_point():
        raise BankInputError(f"{name} has dtype {tokens.dtype}; the bank needs floating tokens",
                             f"Use {name}.float()")
    if like is not None and tokens.shape[0] != like.shape[0]:
        raise BankInputError(f"{name} has batch size {tokens.shape[0]} but the other tokens have {like.shape[0]}",
                             "Give both streams the same batch slots")
    if like is not None and tokens.device != like.device:
        raise BankInputError(f"{name} is on {tokens.device} but the other tokens are on {like.device}",
                             "Move both to the same device")
    return tokens


def check_timestep(timestep: object, batch_size: int, device: torch.device) -> torch.Tensor:
    """A scalar or ``(B,)`` episode step index >= 0 as float32 ``(B,)`` on ``device``."""
    try:
        value = torch.as_tensor(timestep, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise BankInputError(f"timestep must be a number or a (B,) tensor, got {type(timestep).__name__}") from exc
    if value.dtype == torch.bool or value.is_complex() or value.dim() > 1 or value.numel() not in (1, batch_size):
        raise BankInputError(f"timestep must be a real scalar or shape ({batch_size},), got {value.dtype} "
                             f"{tuple(value.shape)}", "Pass each slot's episode step index (0 on the first frame)")
    value = value.float().expand(batch_size) if value.dim() == 0 else value.float().reshape(batch_size)
    if not bool(torch.isfinite(value).all() & (value >= 0).all()):  # one device sync per call
        raise BankInputError(f"timestep must be finite and >= 0, got {value.tolist()}",
                             "Use the episode step index (0 on an episode's first frame), not a time offset")
    return value


def check_active(active: object, batch_size: int, device: torch.device) -> torch.Tensor:
    """bool ``(B,)`` on ``device``; None -> all True."""
    if active is None:
        return torch.ones(batch_size, dtype=torch.bool, device=device)
    value = torch.as_tensor(active, device=device)
    if value.dtype != torch.bool or value.shape != (batch_size,):
        raise BankInputError(f"active must be a bool tensor of shape ({batch_size},), got {value.dtype} "
                             f"{tuple(value.shape)}",
                             "Pass a mask with True for the slots that take this step")
    return value


def check_slots(slots: object, batch_size: int) -> torch.Tensor:
    """Slot indices (an int, ints, or a bool mask ``(B,)``) -> sorted unique int64 CPU indices."""
    value = torch.as_tensor([slots] if isinstance(slots, int) else slots).cpu()
    if value.dtype == torch.bool:
        if value.shape != (batch_size,):
            raise BankInputError(f"a slot mask must have shape ({batch_size},), got {tuple(value.shape)}")
        return value.nonzero().flatten()
    if value.is_floating_point() or value.is_complex() or value.dim() > 1:
        raise BankInputError(f"slots must be ints or a bool mask, got {value.dtype} {tuple(value.shape)}")
    bad = value[(value < 0) | (value >= batch_size)].tolist()
    if bad:
        raise BankInputError(f"slots {bad} are out of range for a bank of {batch_size} slots",
                             f"Use indices 0..{batch_size - 1}")
    return value.long().unique()


def check_episode_ids(given: object, current: torch.Tensor) -> None:
    """Raise when the caller's episode ids ``(B,)`` differ from the slots' running ones."""
    value = torch.as_tensor(given).cpu()
    if value.shape != current.shape:
        raise BankInputError(f"episode_ids must have shape {tuple(current.shape)}, got {tuple(value.shape)}")
    stale = (value != current).nonzero().flatten().tolist()
    if stale:
        raise BankInputError(f"slots {stale} run episodes {current[stale].tolist()} but episode_ids says "
                             f"{value[stale].tolist()}",
                             f"Call memory.reset(slots={stale}) when those episodes start and use memory.episode_ids")
