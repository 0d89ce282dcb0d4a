"""SAM 2's per-frame heads, driven from outside the model: memory attention over a bounded bank,
the mask decoder with every candidate kept, and the object pointer of a chosen candidate.

These functions call the ``sam2`` model's own modules (``memory_attention``, ``sam_prompt_encoder``,
``sam_mask_decoder``, ``obj_ptr_proj``...) in the order ``SAM2Base._prepare_memory_conditioned_features``
and ``SAM2Base._forward_sam_heads`` do, with two changes SAMURAI needs: the memory comes from
:class:`~memstream.tracking.sam2_stream.bank.MemoryReadout` (not from a dict of every past frame), and the
candidate is chosen outside (by the tracker) instead of by ``argmax`` of the predicted IoU, so the
object pointer and the memory are those of the chosen mask. With every frame accepted and the
highest-affinity choice they reproduce SAM 2's video predictor (tested against it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NO_OBJ_SCORE = -1024.0  # sam2.modeling.sam2_base.NO_OBJ_SCORE


@dataclass
class DecoderOutput:
    """The mask decoder's outputs for a batch of B objects (M candidates each).

    Attributes:
        low_res_masks: ``(B, M, 4h, 4w)`` float32 logits; NO_OBJ_SCORE where the object is absent.
        ious: ``(B, M)`` predicted IoU (affinity).
        tokens: ``(B, M or 1, C)`` output tokens, from which object pointers are made.
        object_score_logits: ``(B, 1)``.
        appearing: ``(B, 1)`` bool, object score above the no-object threshold.
    """

    low_res_masks: torch.Tensor
    ious: torch.Tensor
    tokens: torch.Tensor
    object_score_logits: torch.Tensor
    appearing: torch.Tensor

    def high_res(self, image_size: int) -> torch.Tensor:
        """``(B, M, S, S)`` logits at the model's input size (what SAM 2 encodes into memory)."""
        return F.interpolate(self.low_res_masks, size=(image_size, image_size), mode="bilinear", align_corners=False)


def decode(
    model: torch.nn.Module,
    pix_feat: torch.Tensor,
    high_res_features: list[torch.Tensor],
    point_inputs: dict[str, torch.Tensor] | None,
    multimask: bool,
    min_obj_score_logit: float = 0.0,
) -> DecoderOutput:
    """Prompt encoder + mask decoder on ``pix_feat`` ``(B, C, H, W)``, keeping every candidate.

    ``min_obj_score_logit``: masks of objects scoring at or below it are blanked (SAM 2: 0;
    SAMURAI: -1, so weakly visible objects keep their mask).
    """
    batch, device = pix_feat.size(0), pix_feat.device
    if point_inputs is None:
        coords = torch.zeros(batch, 1, 2, device=device)
        labels = -torch.ones(batch, 1, dtype=torch.int32, device=device)
    else:
        coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
    sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    low_res, ious, tokens, object_score_logits = model.sam_mask_decoder(
        image_embeddings=pix_feat,
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=False,
        high_res_features=high_res_features,
    )
    appearing = object_score_logits > min_obj_score_logit
    if model.pred_obj_scores:
        low_res = torch.where(appearing[:, None, None], low_res, NO_OBJ_SCORE)
    return DecoderOutput(low_res.float(), ious, tokens, object_score_logits, appearing)


def object_pointer(model: torch.nn.Module, out: DecoderOutput, chosen: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` object pointers of the chosen candidates ``chosen`` ``(B,)`` (SAM 2's occlusion
    handling: a hard or soft mix with the learned no-object pointer)."""
    batch = out.tokens.size(0)
    token = out.tokens[:, 0]
    if out.tokens.size(1) > 1:
        token = out.tokens[torch.arange(batch, device=chosen.device), chosen]
    obj_ptr = model.obj_ptr_proj(token)
    if model.pred_obj_scores:
        if model.soft_no_obj_ptr:
            weight = out.object_score_logits.sigmoid()
        else:
            weight = out.appearing.float()
        if model.fixed_no_obj_ptr:
            obj_ptr = weight * obj_ptr
        obj_ptr = obj_ptr + (1 - weight) * model.no_obj_ptr
    return obj_ptr


def attend_to_memory(
    model: torch.nn.Module,
    vision_feat: torch.Tensor,
    vision_pos: torch.Tensor,
    feat_size: tuple[int, int],
    spatial: list[tuple[int, torch.Tensor]],
    maskmem_pos_enc: torch.Tensor,
    pointer_distances: torch.Tensor,
    pointers: torch.Tensor,
) -> torch.Tensor:
    """Condition the current frame's features on B objects' memories (one memory layout for all).

    Args:
        vision_feat, vision_pos: ``(HW, B, C)`` lowest-resolution features and their positions.
        feat_size: ``(H, W)``.
        spatial: ``(t_pos, features (B, mem_dim, h, w))`` per memory slot.
        maskmem_pos_enc: ``(1, mem_dim, h, w)`` spatial position encoding of memories.
        pointer_distances: ``(P, B)`` signed frame distance of each pointer.
        pointers: ``(P, B, C)`` object pointers.

    Returns:
        ``(B, C, H, W)`` memory-conditioned features for the mask decoder.
    """
    batch, channels = vision_feat.size(1), model.hidden_dim
    device = vision_feat.device
    memory, memory_pos = [], []
    for t_pos, feats in spatial:
        memory.append(feats.to(device, non_blocking=True).flatten(2).permute(2, 0, 1))
        enc = maskmem_pos_enc.to(device).expand(batch, -1, -1, -1).flatten(2).permute(2, 0, 1)
        memory_pos.append(enc + model.maskmem_tpos_enc[model.num_maskmem - t_pos - 1])
    num_ptr_tokens = 0
    if model.use_obj_ptrs_in_encoder and len(pointers) > 0:
        ptrs, pos = _pointer_tokens(model, pointers, pointer_distances.to(device, non_blocking=True))
        memory.append(ptrs)
        memory_pos.append(pos)
        num_ptr_tokens = ptrs.shape[0]
    out = model.memory_attention(
        curr=[vision_feat], curr_pos=[vision_pos], memory=torch.cat(memory, dim=0),
        memory_pos=torch.cat(memory_pos, dim=0), num_obj_ptr_tokens=num_ptr_tokens,
    )
    return out.permute(1, 2, 0).view(batch, channels, *feat_size)


def _pointer_tokens(model: torch.nn.Module, ptrs: torch.Tensor, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pointers as memory tokens with their temporal encoding (split into mem_dim-sized tokens)."""
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    count, batch, channels = ptrs.shape
    mem_dim = model.mem_dim
    if model.add_tpos_enc_to_obj_ptrs:
        t_diff_max = model.max_obj_ptrs_in_encoder - 1
        tpos_dim = channels if model.proj_tpos_enc_in_obj_ptrs else mem_dim
        pos = model.obj_ptr_tpos_proj(get_1d_sine_pe(distances / t_diff_max, dim=tpos_dim))
    else:
        pos = ptrs.new_zeros(count, batch, mem_dim)
    if mem_dim < channels:
        ptrs = ptrs.reshape(count, batch, channels // mem_dim, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        pos = pos.repeat_interleave(channels // mem_dim, dim=0)
    return ptrs, pos
