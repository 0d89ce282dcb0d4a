"""Configuration of the memory-conditioned policy (LeRobot layout: ``configuration_<name>.py``).

The fields follow LeRobot's policy configs (``n_obs_steps``, ``chunk_size``, ``n_action_steps``,
``input_features`` / ``output_features``, ``optimizer_*``) and add the memory's: the bank settings
of :class:`memstream.embodied.bank.MemoryBankConfig` and which streams have a bank. The sizes default to a
policy that trains on a 2-core CPU in minutes; MemoryVLA's are 256 perceptual tokens x 256
channels, a 4096-d cognitive token and a DiT-L action expert.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from memstream.embodied.bank import MemoryBankConfig
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError

MEMORY_MODES = ("bank", "none")
PERCEPTUAL_ENCODERS = ("cnn", "patch", "hf")
PERCEPTUAL_POOLS = ("avg", "max")
COGNITIVE_ENCODERS = ("task_state", "video_llm")
ACTION_HEADS = ("flow", "discrete")
ONSET_FRAMES = 2  # frames from the first non-zero action that onset_loss_weight weighs


def check_crop(crop: object, image_hw: tuple[int, int]) -> tuple[int, int, int]:
    """``crop`` as ``(top, left, size)`` ints if it is a square inside an image of ``image_hw`` pixels
    (``MemoryVLAConfig.image_crop``).

    Raises:
        ConfigError: not three whole numbers, a size under 1, or a square that leaves the image.
    """
    values = tuple(crop) if isinstance(crop, (list, tuple)) else ()
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ConfigError(f"image_crop must be three whole numbers (top, left, size) in pixels, got {crop!r}",
                          "Pass e.g. (50, 40, 48), or None for the whole image")
    top, left, size = values
    height, width = image_hw
    if size < 1 or top < 0 or left < 0 or top + size > height or left + size > width:
        raise ConfigError(f"image_crop (top {top}, left {left}, size {size}) is not a square inside the "
                          f"{height} x {width} image", f"Keep top + size <= {height} and left + size <= {width}, all >= 0")
    return top, left, size


@strict_config
@dataclass
class MemoryVLAConfig:
    """Settings of :class:`~memstream.embodied.policies.memvla.MemoryVLAPolicy`.

    Attributes:
        input_features: observation key -> shape: an image key ``(3, H, W)`` (channels first, as
            LeRobot's features) and optionally ``observation.state`` ``(S,)``.
        output_features: ``{"action": (A,)}``.
        n_obs_steps: observations per decision (1: the memory carries the history).
        chunk_size: actions predicted per call of ``predict_action_chunk``.
        n_action_steps: actions of a chunk executed before predicting again.
        memory: ``"bank"`` (the perceptual-cognitive bank) or ``"none"`` (current frame only).
        bank: the bank's rules (capacity, layers, timestep PE, gate/add, tome/fifo/none).
        memory_streams: streams with a bank: both, or one of them (the paper's ablation).
        perceptual_encoder: ``"patch"`` (ViT-style linear patch embedding, trained here; the
            default), ``"cnn"`` (a small CNN) or ``"hf"`` (a transformers vision backbone, SigLIP /
            DINOv2, from ``vision_model``). On ``cue_choice`` the CNN's GroupNorm-ed features carry
            the early cue 4x more weakly than patches do, and a policy on them never learned to
            read it back from the bank (decision accuracy 53 % after 400 steps vs 100 %).
        vision_model: local path or hub id of the backbone when ``perceptual_encoder="hf"``.
        freeze_vision: keep the backbone's weights fixed (only its projection trains).
        perceptual_dim: Cp, channels of a perceptual token.
        perceptual_grid: the tokens form a grid of this side (N = grid^2).
        perceptual_pool: how a token summarises its image region (``"patch"`` and ``"cnn"``):
            ``"avg"`` (the default and the behaviour of every policy saved before the setting
            existed: one linear embedding of the whole ``H / grid`` patch, or the CNN map's mean) or
            ``"max"`` (``perceptual_subgrid``^2 finer patches per token, each embedded on its own,
            and their channel-wise maximum: a small salient object keeps its full strength; see
            :class:`~memstream.embodied.policies.memvla.encoders.PatchEncoder`).
        perceptual_subgrid: finer patches per token side with ``perceptual_pool="max"``.
        perceptual_fine_position: with the ``"patch"`` encoder and ``perceptual_pool="max"``, a
            learned embedding per fine patch before the nonlinearity, so a token keeps where in its
            region a feature was (off by default and in every policy saved before the setting
            existed; see :class:`~memstream.embodied.policies.memvla.encoders.PatchEncoder`).
        cognitive_encoder: ``"task_state"``: the instruction (hashed words), the pooled perceptual
            tokens and the state through an MLP; ``"video_llm"``: MemoryVLA's, the last hidden
            state of the Video-LLM ``language_model`` at the end of its prompt, projected.
        language_model: local path or hub id of the Video-LLM when ``cognitive_encoder="video_llm"``.
        cognitive_dim: Dc, channels of the cognitive token.
        vocab_buckets: hashed word buckets of the instruction embedding.
        action_head: ``"flow"`` (continuous actions: the flow-matching expert) or ``"discrete"``
            (habitat-style action ids: ``output_features["action"]`` is ``(1,)`` holding the id,
            ``num_discrete_actions`` classes, cross-entropy; actions are not normalised).
        num_discrete_actions: size of the action vocabulary with ``action_head="discrete"``
            (habitat's 4: stop, move_forward, turn_left, turn_right).
        hidden_dim, head_layers, head_heads: the action head's transformer.
        head_film: the condition (fused cognitive token and state) modulates the head's perceptual
            context feature-wise (FiLM, RT-1's instruction conditioning; see
            :class:`~memstream.embodied.policies.memvla.action_head.ContextFiLM`). Off by default
            and in every policy saved before the setting existed.
        chunk_prior: a deterministic MLP regresses the action chunk from the condition and the
            flattened fused perceptual tokens (MSE) and the flow head models the residual from it
            (see :class:`~memstream.embodied.policies.memvla.action_head.ChunkPrior`). Flow head
            only; off by default and in every policy saved before the setting existed.
        prior_readout_heads: heads of the chunk prior's spatial readout (0: off, the default and
            every policy saved before the setting existed; needs ``chunk_prior``): the prior reads
            the fused perceptual tokens through attention pooling by a scorer shared by every token
            (the pooled values and grid coordinates) instead of flattened (see
            :class:`~memstream.embodied.policies.memvla.action_head.SpatialReadout`).
        prior_readout_offsets: each token of the prior's readout also regresses, per head, where in
            it the thing scored is (up to one token spacing; zero at initialisation), and the pooled
            place moves with it (off: the default and every policy saved before the setting existed;
            needs ``prior_readout_heads``; see ``SpatialReadout``). For a place finer than a token,
            as ``keypoint_loss_weight`` asks of the last head. Measured on InterceptMedium (stop 45,
            benchmarks/MIKASA.md): 400 steps on from a keypoint-loss policy, its head on the ball to
            4.3 px rms with offsets against 5.0 px without (16 px tokens).
        prior_readout_track: the chunk prior also reads how far each readout head's place moved
            since each of this many earlier frames of the episode (0: off, the default and every
            policy saved before the setting existed; needs ``prior_readout_heads``; see
            ``ChunkPrior``): where a thing in view is going, not only where it is (InterceptMedium's
            rolling ball). Training reads the places over the sequence; acting keeps them per slot
            and restarts them where an episode starts. Measured on InterceptMedium (stop 46,
            benchmarks/MIKASA.md): 8 frames beside the same training without, from scratch with the
            keypoint loss and offsets, 0.10 against 0.12 success over 200 episodes: no gain yet.
        goal_loss_weight: weight of an auxiliary loss (0: off, the default and every policy saved
            before the setting existed): a small MLP over the condition and the flattened fused
            perceptual tokens predicts, at every valid frame, the normalised state of its
            demonstration's *last* frame (where the expert ends up), by MSE. The action loss
            supervises a decision only on the few frames that act on it (on MIKASA RememberColor3,
            the ~8 frames of the flight towards the cube, while the hold frames' actions are ~0
            whichever cube was chosen); the goal names the decision on every frame after it is
            determined, so the tokens that carry it get a gradient from every frame. Training
            only (the MLP is not used to act); needs a state feature. Measured on RememberColor3
            (benchmarks/MIKASA.md): no gain, since after the first move the motion under way gives the goal away.
        onset_loss_weight: weight of the action-onset frames in the chunk prior's loss (1: every
            frame alike, the default and every policy saved before the setting existed). The onset
            is the first :data:`ONSET_FRAMES` frames from the demonstration's first non-zero action.
            Where a task's decision is made when the arm starts moving (MIKASA RememberColor: the
            cubes appear and the arm leaves in the same frame), every later frame can be predicted
            from the motion already under way (the state shows where the arm is heading), so the
            loss is low for a policy that never reads its memory except on these one or two frames
            of twenty-five. Needs ``chunk_prior``. Measured on RememberColor3 with weight 10 (benchmarks/MIKASA.md):
            held-out first-move agreement 0.50 -> 0.54, simulator success 0.20 -> 0.29.
        pointer_loss_weight: weight of an auxiliary cross-entropy (0: off, the default and every
            policy saved before the setting existed; needs ``prior_readout_heads``): the chunk
            prior's first readout head's softmax over the image tokens is trained towards the token
            the batch's ``pointer_target`` ``(B, T)`` names (-1: no target at that frame). The MIKASA
            trainer names the token the demonstration's end point (where the expert's tip stops: on
            RememberColor, the cued cube) projects into, from the first frame the arm moves on: a
            privileged supervision of *where to look*, used in training only. Why: reading the
            remembered colour and matching it with the cubes in view is not learned from the action
            regression alone (the binding diagnostic, ``benchmarks/diag_mikasa_binding.py``: 0.00 of
            RememberColor5 choices right after 3,000 steps with every scorer tried), while the same
            path with this loss chooses right in 0.88 of held-out episodes.
        keypoint_loss_weight: weight of an auxiliary regression (0: off, the default and every
            policy saved before the setting existed; needs ``prior_readout_heads``): the grid
            coordinates the chunk prior's *last* readout head pools (its softmax-weighted mean of the
            token centres, a spatial soft-argmax) are trained towards the batch's
            ``keypoint_target`` ``(B, T, 2)`` (x, y in the readout's grid coordinates, -1 .. 1 between
            the corner tokens' centres; NaN: no target at that frame), by the mean squared distance
            in token widths. The MIKASA trainer names the rolling ball of the Intercept tasks, found
            in every stored frame by its colour (:func:`~memstream.embodied.policies.memvla.mikasa.ball_pixels`,
            no simulator): training only. Why: the policies catch the ball 1.3-2.0 cm off its line
            while a line fitted through the ball's 128 px centroids misses by 0.2 cm
            (``benchmarks/diag_mikasa_push.py line``): the ball is 2-3 px of a 16 px token, and the
            action regression alone does not make the readout find it to a fraction of a token. The
            soft-argmax of a spatial softmax (Levine et al. 2016) is the readout's own "where", so the
            supervision needs no new module. Refused with ``augment_shift`` (the shift would move the
            image under its targets). Measured on InterceptMedium (benchmarks/MIKASA.md, stop 45):
            800 steps from a trained policy with weight 1, 0.27 of 200 evaluation episodes against
            0.19 for the same steps without it; the head finds the ball to 5.3 px rms.
        num_inference_steps: Euler steps from noise to an action chunk.
        optimizer_lr, optimizer_weight_decay, optimizer_grad_clip_norm: AdamW preset.
        group_size: frames per training sequence (MemoryVLA's group sampler: the bank is cleared
            at each group); None trains on whole episodes (MemoryVLA's ``stream`` loader).
        loss_frames: frames of each training sequence that enter the action loss, drawn at random
            per step (None: every valid frame). Encoders and the bank still see every frame; the
            action head, most of a step's cost on a CPU, runs on these only (the chunk prior, a small
            MLP, learns from every valid frame).
        bank_gradients: train by backpropagation through the bank: the tokens a training sequence
            stores keep their autograd history, so a loss at frame t reaches the encoders at the
            earlier frames whose entries it read (MemoryVLA stores them detached: its pretrained
            encoders already write what matters). Off, an encoder trained from scratch gets no
            gradient from its cue frame at all (MIKASA RememberColor3: the gradient of the
            moving frames' loss w.r.t. the cue frames' pixels is exactly 0), and the cue's colour
            fades from the stored cognitive token as training goes on (linear probe 1.00 at
            initialisation, 0.76 after 600 steps). Training only; inference is unchanged.
        augment_shift: training only: each frame is translated by a random whole number of pixels
            in [-augment_shift, augment_shift] per axis (edges replicated; DrQ's random shift).
        augment_hue: training only: every frame of a training sequence has its hue turned by one
            random fraction of a full circle in [-augment_hue, augment_hue] (0: off; at most 0.5,
            any hue): a rotation of RGB about its grey axis (``rotate_hue``), greys and brightness
            kept, colours leaving the RGB cube clipped. One turn per sequence keeps what a memory task
            asks: the cube that matched the cue's colour still matches it, while the colour itself
            changes, so the policy learns to compare the remembered colour with the ones in view
            instead of one rule per colour of its few hundred demonstrations.
        augment_state_noise: training only: Gaussian noise of this std added to the normalised
            state of each frame. Both break per-episode fingerprints: on MIKASA RememberColor3 a
            policy with NO memory trained without them picks the expert's cube at the first move
            in 90 % of its training episodes (chance 1/3: it recognises each episode from the
            cubes' jitter and the arm's initial pose), so the loss is met without ever reading the cue.
        image_crop: ``None`` (the whole image, the default and every policy saved before the setting
            existed) or ``(top, left, size)`` in the input image's pixels: the policy cuts this square
            from every image it is given (training, evaluation, a policy server's clients) and
            resizes it back to the input's size before its encoders, so a fixed camera's workspace
            is seen at ``input / size`` times the resolution for the same token grid and compute. On
            MIKASA RememberColor9 the nine cubes stand 5.9 px apart in the 128 px base camera (median
            nearest pair), so at an 8 x 8 grid the cued cube shares its token with another in 0.39 of
            the episodes (0.15 on five cubes, 0.02 on three) and the binding warm start does not
            learn; ``(50, 40, 48)`` holds the cue and every five- and nine-cube layout, shares in 0.05
            and the warm start points at the cued cube in 0.985 of its demonstrations
            (``benchmarks/diag_mikasa_tokens.py``, benchmarks/MIKASA.md).
        inference_noise: scale of the Gaussian the flow sampler starts from at inference (1.0: the
            trained distribution; 0.0: one deterministic chunk per observation, so consecutive chunks
            do not hop between modes, e.g. two cubes, and the arm is not jittered by sampling noise).
        temporal_ensemble_coeff: inference only, LeRobot ACT's setting of the same name: ``None``
            (off) or m, and ``select_action`` predicts a chunk every step and executes, for each
            step, the average of every chunk's prediction for it, weighted exp(-m * i) with i = 0
            the oldest (ACT, Zhao et al. 2023, Algorithm 2; ACT's default m = 0.01 weighs them
            almost evenly, m < 0 favours the newest). Needs ``n_action_steps = 1`` and the flow head.
    """

    input_features: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"observation.image": (3, 64, 64), "observation.state": (2,)})
    output_features: dict[str, tuple[int, ...]] = field(default_factory=lambda: {"action": (2,)})
    n_obs_steps: int = 1
    chunk_size: int = 8
    n_action_steps: int = 4
    memory: str = "bank"
    bank: MemoryBankConfig = field(default_factory=MemoryBankConfig)
    memory_streams: tuple[str, ...] = ("perceptual", "cognitive")
    perceptual_encoder: str = "patch"
    vision_model: str | None = None
    freeze_vision: bool = True
    perceptual_dim: int = 64
    perceptual_grid: int = 4
    perceptual_pool: str = "avg"
    perceptual_subgrid: int = 4
    perceptual_fine_position: bool = False
    cognitive_encoder: str = "task_state"
    language_model: str | None = None
    cognitive_dim: int = 128
    vocab_buckets: int = 1024
    action_head: str = "flow"
    num_discrete_actions: int = 4
    hidden_dim: int = 128
    head_layers: int = 3
    head_heads: int = 4
    head_film: bool = False
    chunk_prior: bool = False
    prior_readout_heads: int = 0
    prior_readout_offsets: bool = False
    prior_readout_track: int = 0
    goal_loss_weight: float = 0.0
    onset_loss_weight: float = 1.0
    pointer_loss_weight: float = 0.0
    keypoint_loss_weight: float = 0.0
    num_inference_steps: int = 10
    optimizer_lr: float = 1e-3
    optimizer_weight_decay: float = 1e-4
    optimizer_grad_clip_norm: float = 1.0
    group_size: int | None = None
    loss_frames: int | None = None
    bank_gradients: bool = False
    augment_shift: int = 0
    augment_state_noise: float = 0.0
    augment_hue: float = 0.0
    inference_noise: float = 1.0
    temporal_ensemble_coeff: float | None = None
    image_crop: tuple[int, int, int] | None = None

    type: str = "memvla"  # LeRobot's registry name

    def __post_init__(self) -> None:
        if isinstance(self.bank, dict):  # from config.json
            self.bank = MemoryBankConfig(**self.bank)
        self.memory_streams = tuple(self.memory_streams)
        self.input_features = {k: tuple(v) for k, v in self.input_features.items()}
        self.output_features = {k: tuple(v) for k, v in self.output_features.items()}
        if self.memory not in MEMORY_MODES:
            raise ConfigError(f"MemoryVLAConfig.memory must be one of {MEMORY_MODES}, got {self.memory!r}")
        if not self.memory_streams or set(self.memory_streams) - {"perceptual", "cognitive"}:
            raise ConfigError(f"memory_streams must be a non-empty subset of ('perceptual', 'cognitive'), got {self.memory_streams}")
        if self.perceptual_encoder not in PERCEPTUAL_ENCODERS:
            raise ConfigError(f"perceptual_encoder must be one of {PERCEPTUAL_ENCODERS}, got {self.perceptual_encoder!r}")
        if self.perceptual_encoder == "hf" and not self.vision_model:
            raise ConfigError("perceptual_encoder='hf' needs vision_model", "Give a local path or hub id of a SigLIP or DINOv2 model")
        if self.perceptual_pool not in PERCEPTUAL_POOLS:
            raise ConfigError(f"perceptual_pool must be one of {PERCEPTUAL_POOLS}, got {self.perceptual_pool!r}")
        if self.perceptual_pool == "max" and self.perceptual_encoder == "hf":
            raise ConfigError("perceptual_pool='max' applies to the 'patch' and 'cnn' encoders, not 'hf'",
                              "Use perceptual_pool='avg' with a pretrained backbone")
        if self.perceptual_fine_position and (self.perceptual_encoder != "patch" or self.perceptual_pool != "max"):
            raise ConfigError("perceptual_fine_position applies to the 'patch' encoder with perceptual_pool='max'",
                              "Set perceptual_encoder='patch' and perceptual_pool='max', or drop perceptual_fine_position")
        if self.cognitive_encoder not in COGNITIVE_ENCODERS:
            raise ConfigError(f"cognitive_encoder must be one of {COGNITIVE_ENCODERS}, got {self.cognitive_encoder!r}")
        if self.cognitive_encoder == "video_llm" and not self.language_model:
            raise ConfigError("cognitive_encoder='video_llm' needs language_model",
                              "Give a local path or hub id of a LLaVA-OneVision or Qwen2.5-VL checkpoint")
        if self.action_head not in ACTION_HEADS:
            raise ConfigError(f"action_head must be one of {ACTION_HEADS}, got {self.action_head!r}")
        if self.action_head == "discrete" and (self.num_discrete_actions < 2 or self.output_features.get("action") != (1,)):
            raise ConfigError(f"action_head='discrete' needs num_discrete_actions >= 2 and output_features "
                              f"action (1,), got {self.num_discrete_actions} and {self.output_features.get('action')}",
                              "Store each action as one id: output_features={'action': (1,)}")
        if self.chunk_prior and self.action_head != "flow":
            raise ConfigError("chunk_prior needs the flow head (a regressed mean of action ids means nothing)",
                              "Pass chunk_prior=False with action_head='discrete'")
        if not self.goal_loss_weight >= 0.0:  # also refuses NaN
            raise ConfigError(f"goal_loss_weight must be >= 0, got {self.goal_loss_weight}", "Pass 0 (off) or e.g. 1.0")
        if self.goal_loss_weight > 0 and not self.state_dim:
            raise ConfigError("goal_loss_weight > 0 predicts the last frame's state, but the policy has no state feature",
                              "Add 'observation.state' to input_features or pass goal_loss_weight=0")
        if isinstance(self.prior_readout_heads, bool) or not isinstance(self.prior_readout_heads, int) \
                or self.prior_readout_heads < 0:
            raise ConfigError(f"prior_readout_heads must be an int >= 0, got {self.prior_readout_heads!r}", "Pass 0 (off) or e.g. 4")
        if self.prior_readout_heads and not self.chunk_prior:
            raise ConfigError("prior_readout_heads is a part of the chunk prior, but chunk_prior is off",
                              "Pass chunk_prior=True or prior_readout_heads=0")
        if self.prior_readout_offsets and not self.prior_readout_heads:
            raise ConfigError("prior_readout_offsets is a part of the prior's readout, but the prior has none",
                              "Pass chunk_prior=True with prior_readout_heads >= 1, or prior_readout_offsets=False")
        if not (self.pointer_loss_weight >= 0.0 and math.isfinite(self.pointer_loss_weight)):  # also refuses NaN
            raise ConfigError(f"pointer_loss_weight must be a finite number >= 0, got {self.pointer_loss_weight}",
                              "Pass 0 (off) or e.g. 1.0")
        if isinstance(self.prior_readout_track, bool) or not isinstance(self.prior_readout_track, int) \
                or self.prior_readout_track < 0:
            raise ConfigError(f"prior_readout_track must be an int >= 0, got {self.prior_readout_track!r}",
                              "Pass 0 (off) or e.g. 8 (earlier frames)")
        if self.prior_readout_track and not self.prior_readout_heads:
            raise ConfigError("prior_readout_track reads the places of the prior's readout, but the prior has none",
                              "Pass chunk_prior=True with prior_readout_heads >= 1, or prior_readout_track=0")
        if self.pointer_loss_weight > 0 and not self.prior_readout_heads:
            raise ConfigError("pointer_loss_weight trains the chunk prior's first readout head, but the prior has no readout",
                              "Pass chunk_prior=True with prior_readout_heads >= 1, or pointer_loss_weight=0")
        if not (self.keypoint_loss_weight >= 0.0 and math.isfinite(self.keypoint_loss_weight)):  # also refuses NaN
            raise ConfigError(f"keypoint_loss_weight must be a finite number >= 0, got {self.keypoint_loss_weight}",
                              "Pass 0 (off) or e.g. 1.0")
        if self.keypoint_loss_weight > 0 and not self.prior_readout_heads:
            raise ConfigError("keypoint_loss_weight trains the chunk prior's last readout head, but the prior has no readout",
                              "Pass chunk_prior=True with prior_readout_heads >= 1, or keypoint_loss_weight=0")
        if self.keypoint_loss_weight > 0 and self.augment_shift:
            raise ConfigError("keypoint_loss_weight's targets are pixel places, and augment_shift moves the image under them",
                              "Pass augment_shift=0 or keypoint_loss_weight=0")
        if not self.onset_loss_weight > 0.0:  # also refuses NaN
            raise ConfigError(f"onset_loss_weight must be > 0, got {self.onset_loss_weight}", "Pass 1 (off) or e.g. 10")
        if self.onset_loss_weight != 1.0 and not self.chunk_prior:
            raise ConfigError("onset_loss_weight weighs the chunk prior's loss, but chunk_prior is off",
                              "Pass chunk_prior=True or onset_loss_weight=1")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ConfigError(f"need 1 <= n_action_steps <= chunk_size, got {self.n_action_steps} and {self.chunk_size}")
        if self.n_obs_steps != 1:
            raise ConfigError(f"n_obs_steps must be 1 (the memory bank carries the history), got {self.n_obs_steps}")
        for name in ("perceptual_dim", "perceptual_grid", "perceptual_subgrid", "cognitive_dim", "hidden_dim", "head_layers",
                     "num_inference_steps", "vocab_buckets"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MemoryVLAConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_dim % self.head_heads:
            raise ConfigError(f"hidden_dim {self.hidden_dim} is not divisible by head_heads {self.head_heads}")
        if self.loss_frames is not None and self.loss_frames < 1:
            raise ConfigError(f"loss_frames must be >= 1 or None, got {self.loss_frames}")
        if self.augment_shift < 0 or self.augment_state_noise < 0:
            raise ConfigError(f"augment_shift and augment_state_noise must be >= 0, got {self.augment_shift} "
                              f"and {self.augment_state_noise}")
        if not 0.0 <= self.augment_hue <= 0.5:  # also refuses NaN
            raise ConfigError(f"augment_hue must be in [0, 0.5] (a fraction of a full turn), got {self.augment_hue}",
                              "Pass 0 (off) or e.g. 0.5 (any hue)")
        if not 0.0 <= self.inference_noise <= 1.0:
            raise ConfigError(f"inference_noise must be in [0, 1], got {self.inference_noise}")
        if self.temporal_ensemble_coeff is not None:
            coeff = self.temporal_ensemble_coeff
            if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not math.isfinite(coeff):
                raise ConfigError(f"temporal_ensemble_coeff must be None or a finite number, got {coeff!r}",
                                  "Pass None (off) or e.g. 0.01 (ACT's default)")
            if self.n_action_steps != 1 or self.action_head != "flow":
                raise ConfigError(f"temporal_ensemble_coeff averages a chunk predicted every step, so it needs "
                                  f"n_action_steps=1 and the flow head, got {self.n_action_steps} and "
                                  f"{self.action_head!r}", "Pass n_action_steps=1 or temporal_ensemble_coeff=None")
            self.temporal_ensemble_coeff = float(coeff)
        if self.group_size is not None and self.group_size < 1:
            raise ConfigError(f"group_size must be >= 1 or None, got {self.group_size}")
        if self.image_key is None:
            raise ConfigError(f"input_features has no image key: {sorted(self.input_features)}",
                              "Add e.g. 'observation.image': (3, 64, 64)")
        if self.image_crop is not None:
            self.image_crop = check_crop(self.image_crop, self.input_features[self.image_key][1:])
        if "action" not in self.output_features:
            raise ConfigError("output_features needs 'action'", "Add 'action': (action_dim,)")

    # ---- LeRobot-style properties
    @property
    def image_key(self) -> str | None:
        keys = [k for k, shape in self.input_features.items() if k.startswith("observation.image") and len(shape) == 3]
        return keys[0] if keys else None

    @property
    def state_dim(self) -> int:
        return self.input_features.get("observation.state", (0,))[0]

    @property
    def action_dim(self) -> int:
        return self.output_features["action"][0]

    @property
    def observation_delta_indices(self) -> None:
        return None  # one frame per step; the memory holds the past

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["bank"] = dataclasses.asdict(self.bank)
        return out
