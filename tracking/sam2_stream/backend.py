"""SAM 2 as a streaming candidate backend: frames pushed one at a time, bounded memory per object.

Per frame the image is encoded once (the backbone is shared by every object); each object's memory
(:class:`~memstream.tracking.sam2_stream.bank.ObjectMemory`) is read, objects whose memories have the same
layout go through memory attention and the mask decoder as one batch, and the decoder's three
candidate masks per object are handed to the tracker. After the tracker's choice, the chosen masks
are encoded into memory in one batched call. Nothing per frame is kept once it has been returned:
no image list, no per-frame outputs, only each object's bank.

Example:
    >>> backend = Sam2Backend.from_pretrained("facebook/sam2.1-hiera-tiny")  # doctest: +SKIP
    >>> tracker = Tracker(backend, selection="samurai")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from memstream.streaming.types import Frame
from memstream.tracking.masks import box_from_mask
from memstream.tracking.sam2_stream.bank import MemoryEntry, MemoryReadout, ObjectMemory
from memstream.tracking.sam2_stream.heads import DecoderOutput, attend_to_memory, decode, object_pointer
from memstream.tracking.sam2_stream.loading import build_model
from memstream.tracking.tracker import TrackingInputError
from memstream.tracking.types import Candidates, Decision, Prompt

IMG_MEAN = (0.485, 0.456, 0.406)  # sam2.utils.misc.load_video_frames defaults
IMG_STD = (0.229, 0.224, 0.225)


@dataclass
class _EncodedFrame:
    index: int
    rgb: np.ndarray  # the frame's own (read-only) array: the cache key together with the index
    height: int
    width: int
    feats: list[torch.Tensor]  # (HW, 1, C) per level, SAM 2's flattened layout
    pos: list[torch.Tensor]
    sizes: list[tuple[int, int]]

    def expand(self, batch: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [f.expand(-1, batch, -1) for f in self.feats], [p.expand(-1, batch, -1) for p in self.pos]

    def high_res(self, batch: int) -> list[torch.Tensor]:
        """The decoder's high-resolution feature maps, ``(B, C, h, w)``."""
        return [
            f.permute(1, 2, 0).view(1, f.size(2), *s).expand(batch, -1, -1, -1)
            for f, s in zip(self.feats[:-1], self.sizes[:-1])
        ]


@dataclass
class _Pending:
    """A proposed batch of objects, waiting for the tracker's decisions."""

    object_ids: list[int]
    out: DecoderOutput


class Sam2Backend:
    """SAM 2 (the ``sam2`` package's model) proposing candidates for :class:`~memstream.tracking.tracker.Tracker`.

    Args:
        model: a SAM 2 model built by :func:`~memstream.tracking.sam2_stream.loading.build_model`.
        min_obj_score_logit: masks scoring at or below are blanked (SAM 2: 0; SAMURAI: -1).
        autocast: run under ``torch.autocast`` with bf16 on CUDA (as SAM 2's demos do).
    """

    name = "sam2"

    def __init__(self, model: torch.nn.Module, min_obj_score_logit: float = 0.0, autocast: bool = True) -> None:
        self.model = model
        self.min_obj_score_logit = min_obj_score_logit
        self.device = next(model.parameters()).device
        self.autocast = autocast and self.device.type == "cuda"
        self.image_size = int(model.image_size)
        self._lut = _normalisation_table().to(self.device)
        self._memory: dict[int, ObjectMemory] = {}
        self._maskmem_pos_enc: torch.Tensor | None = None
        self._frame: _EncodedFrame | None = None
        self._pending: list[_Pending] = []
        self._fill_holes = _fill_holes_available() and model.fill_hole_area > 0

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | None, model_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml",
        device: str = "auto", image_size: int | None = None, **kwargs: Any,
    ) -> Sam2Backend:
        """Build from a local checkpoint or hub id (None: random weights) and a sam2 config."""
        return cls(build_model(model_config, checkpoint, device=device, image_size=image_size), **kwargs)

    # ------------------------------------------------------------------ protocol
    def add_prompts(self, frame: Frame, prompts: Sequence[Prompt]) -> dict[int, tuple[np.ndarray, Candidates]]:
        encoded = self._encode(frame)
        results = {}
        with self._inference():
            for prompt in prompts:
                results[prompt.object_id] = self._prompt_one(encoded, prompt)
        return results

    def propose(self, frame: Frame, object_ids: Sequence[int]) -> dict[int, Candidates]:
        if self._pending:
            raise RuntimeError("propose() called twice without commit()")
        unknown = [i for i in object_ids if i not in self._memory]
        if unknown:
            raise TrackingInputError(f"objects {unknown} were never prompted", "Prompt an object before tracking it")
        encoded = self._encode(frame)
        groups: dict[Any, list[tuple[int, MemoryReadout]]] = {}
        for object_id in object_ids:
            readout = self._memory[object_id].readout(frame.index)
            groups.setdefault(readout.layout, []).append((object_id, readout))
        proposals = {}
        with self._inference():
            for members in groups.values():
                out = self._track_batch(encoded, [r for _, r in members])
                ids = [i for i, _ in members]
                self._pending.append(_Pending(ids, out))
                proposals.update(zip(ids, self._candidates(out, encoded)))
        return proposals

    def commit(self, decisions: Mapping[int, Decision]) -> dict[int, np.ndarray]:
        encoded, masks = self._frame, {}
        assert encoded is not None
        copies = []
        with self._inference():
            for pending in self._pending:
                chosen = _to_device(torch.tensor([decisions[i].index for i in pending.object_ids]), self.device)
                out = pending.out
                rows = torch.arange(len(chosen), device=self.device)
                low_res = out.low_res_masks[rows, chosen].unsqueeze(1)
                # the masks' copy to the host is queued before the memory encoder, so the wait
                # below does not wait for the memory encoder: it runs on while the caller goes on
                copies.append((pending.object_ids, self._video_masks_queued(low_res, encoded)))
                obj_ptr = object_pointer(self.model, out, chosen)
                features = self._encode_memory(encoded, _upsample(low_res, self.image_size), out.object_score_logits, False)
                for row, object_id in enumerate(pending.object_ids):
                    entry = MemoryEntry(encoded.index, features[row : row + 1], obj_ptr[row : row + 1])
                    self._memory[object_id].add(entry, decisions[object_id].enters_memory)
        for object_ids, (video, ready) in copies:
            if ready is not None:
                ready.synchronize()
            masks.update(zip(object_ids, video.numpy(), strict=True))
        self._pending = []
        return masks

    def remove_object(self, object_id: int) -> None:
        self._memory.pop(object_id, None)

    def reset(self) -> None:
        self._memory.clear()
        self._pending, self._frame = [], None

    def state_dict(self) -> dict[str, Any]:
        """Every object's bank (CPU tensors) and the model facts it depends on."""
        pos_enc = None if self._maskmem_pos_enc is None else self._maskmem_pos_enc.cpu()
        return {
            "backend": self.name, "image_size": self.image_size, "maskmem_pos_enc": pos_enc,
            "objects": {i: m.state_dict() for i, m in self._memory.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace every object's bank with ``state`` (from :meth:`state_dict` of a backend with the
        same model)."""
        if state["image_size"] != self.image_size:
            raise TrackingInputError(
                f"the saved memory is for image_size {state['image_size']}, this model uses {self.image_size}",
                "Load it into a backend built with the same model config and image_size",
            )
        self._memory = {}
        for object_id, bank_state in state["objects"].items():
            bank = self._memory[object_id] = self._new_memory()
            bank.load_state_dict(bank_state, self.device)
        pos_enc = state["maskmem_pos_enc"]
        self._maskmem_pos_enc = None if pos_enc is None else pos_enc.to(self.device)
        self._pending, self._frame = [], None

    def memory_summary(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "objects": {i: {"frames": m.frames(), "bytes": m.nbytes()} for i, m in self._memory.items()},
            "bytes": sum(m.nbytes() for m in self._memory.values()),
        }

    # ------------------------------------------------------------------ steps
    def _encode(self, frame: Frame) -> _EncodedFrame:
        """Backbone features of ``frame``, computed once per frame index."""
        if self._frame is not None and self._frame.index == frame.index and self._frame.rgb is frame.rgb:
            return self._frame
        size = self.image_size
        # the resize stays on the host (PIL's bicubic, as sam2's load_video_frames); only uint8 bytes
        # go to the device (pinned, without waiting), normalised there by table lookup
        image = Image.fromarray(frame.rgb).resize((size, size))
        pinned = self.device.type == "cuda"
        host = torch.empty((size, size, 3), dtype=torch.uint8, pin_memory=pinned)
        host.numpy()[...] = np.asarray(image)
        with self._inference():
            codes = host.to(self.device, non_blocking=pinned).permute(2, 0, 1).reshape(3, -1).long()
            pixels = torch.gather(self._lut, 1, codes).view(1, 3, size, size)
            backbone = self.model.forward_image(pixels)
            _, feats, pos, sizes = self.model._prepare_backbone_features(backbone)
        self._frame = _EncodedFrame(frame.index, frame.rgb, frame.height, frame.width, feats, pos, sizes)
        return self._frame

    def _prompt_one(self, encoded: _EncodedFrame, prompt: Prompt) -> tuple[np.ndarray, Candidates]:
        memory = self._memory.get(prompt.object_id)
        point_inputs = self._point_inputs(prompt, encoded)
        feats, pos = encoded.expand(1)
        is_init = memory is None or not (memory.cond or memory.previous)
        if is_init:  # SAM 2.1: directly_add_no_mem_embed
            c, (h, w) = self.model.hidden_dim, encoded.sizes[-1]
            pix_feat = (feats[-1] + self.model.no_mem_embed).permute(1, 2, 0).view(1, c, h, w)
            memory = self._memory[prompt.object_id] = self._new_memory()
        else:
            pix_feat = self._attend(encoded, [memory.readout(encoded.index)])
        multimask = self.model._use_multimask(is_init, point_inputs)
        out = decode(self.model, pix_feat, encoded.high_res(1), point_inputs, multimask, self.min_obj_score_logit)
        best = torch.argmax(out.ious, dim=-1)
        low_res = out.low_res_masks[torch.arange(1, device=self.device), best].unsqueeze(1)
        if self._fill_holes:
            low_res = _fill_holes_in(low_res, self.model.fill_hole_area)
        # as SAM 2's propagate_in_video_preflight: prompt memories come from the (hole-filled)
        # low-res mask, binarised because it answers the user's clicks
        features = self._encode_memory(encoded, _upsample(low_res, self.image_size), out.object_score_logits, True)
        memory.add_cond(MemoryEntry(encoded.index, features, object_pointer(self.model, out, best)))
        mask = self._video_masks(low_res, encoded, fill=False)[0]
        cands = Candidates(box_from_mask(mask)[None], out.ious[0, best].float().cpu().numpy(),
                           float(out.object_score_logits[0, 0]))
        return mask, cands

    def _track_batch(self, encoded: _EncodedFrame, readouts: list[MemoryReadout]) -> DecoderOutput:
        pix_feat = self._attend(encoded, readouts)
        multimask = self.model._use_multimask(False, None)
        return decode(self.model, pix_feat, encoded.high_res(len(readouts)), None, multimask, self.min_obj_score_logit)

    def _attend(self, encoded: _EncodedFrame, readouts: list[MemoryReadout]) -> torch.Tensor:
        batch = len(readouts)
        feats, pos = encoded.expand(batch)
        spatial = [
            (readouts[0].spatial[slot][0], torch.cat([r.spatial[slot][1].features for r in readouts], 0))
            for slot in range(len(readouts[0].spatial))
        ]
        distances = torch.tensor([[d for d, _ in r.pointers] for r in readouts], dtype=torch.int64).T.reshape(-1, batch)
        distances = _to_device(distances, self.device)
        pointers = torch.stack([torch.cat([p for _, p in r.pointers], 0) for r in readouts], 1) \
            if readouts[0].pointers else torch.zeros(0, batch, self.model.hidden_dim, device=self.device)
        assert self._maskmem_pos_enc is not None
        return attend_to_memory(
            self.model, feats[-1], pos[-1], encoded.sizes[-1], spatial, self._maskmem_pos_enc, distances, pointers
        )

    def _encode_memory(
        self, encoded: _EncodedFrame, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor, from_points: bool
    ) -> torch.Tensor:
        """``(B, mem_dim, h, w)`` bf16 memory features (SAM 2 stores them in bf16)."""
        feats, _ = encoded.expand(high_res_masks.size(0))
        features, pos_enc = self.model._encode_new_memory(
            current_vision_feats=feats, feat_sizes=encoded.sizes, pred_masks_high_res=high_res_masks,
            object_score_logits=object_score_logits, is_mask_from_pts=from_points,
        )
        if self._maskmem_pos_enc is None:  # the same for every frame and object
            self._maskmem_pos_enc = pos_enc[-1][0:1].clone()
        return features.to(torch.bfloat16)

    def _candidates(self, out: DecoderOutput, encoded: _EncodedFrame) -> list[Candidates]:
        """Boxes of every candidate, from its mask at the model's input size, in frame pixels."""
        from sam2.utils.misc import mask_to_box

        batch, count = out.low_res_masks.shape[:2]
        high_res = out.high_res(self.image_size).flatten(0, 1).unsqueeze(1) > 0
        xyxy = mask_to_box(high_res).reshape(batch, count * 4).float()
        # one copy to the host (one wait) for everything the tracker reads; the int32 corners are
        # exact in float32, the IoUs and logits are converted to float32 as before
        packed = torch.cat([xyxy, out.ious.float(), out.object_score_logits.float()], 1).cpu().numpy()
        xyxy = packed[:, : count * 4].reshape(batch, count, 4)
        ious, logits = packed[:, count * 4 : count * 5], packed[:, count * 5]
        scale = np.array([encoded.width, encoded.height] * 2, np.float64) / self.image_size
        boxes = np.concatenate([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2] + 1], -1) * scale
        empty = xyxy[..., 2] < xyxy[..., 0]
        boxes[empty] = 0.0
        return [Candidates(boxes[b], ious[b].copy(), float(logits[b])) for b in range(batch)]

    def _video_masks(self, low_res: torch.Tensor, encoded: _EncodedFrame, fill: bool = True) -> list[np.ndarray]:
        """``(B, 1, h, w)`` logits -> B bool masks at the frame's size (SAM 2's bilinear upsampling)."""
        video, ready = self._video_masks_queued(low_res, encoded, fill)
        if ready is not None:
            ready.synchronize()
        return list(video.numpy())

    def _video_masks_queued(
        self, low_res: torch.Tensor, encoded: _EncodedFrame, fill: bool = True
    ) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        """As :meth:`_video_masks`, but the ``(B, h, w)`` bool masks come back as a host tensor whose
        copy may still be under way: read it after the returned CUDA event (None on the CPU) is done."""
        if fill and self._fill_holes:
            low_res = _fill_holes_in(low_res, self.model.fill_hole_area)
        video = F.interpolate(low_res, size=(encoded.height, encoded.width), mode="bilinear", align_corners=False)
        video = video[:, 0] > 0
        if video.device.type != "cuda":
            return video, None
        host = torch.empty(video.shape, dtype=torch.bool, pin_memory=True)
        host.copy_(video, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        return host, ready

    def _point_inputs(self, prompt: Prompt, encoded: _EncodedFrame) -> dict[str, torch.Tensor]:
        """SAM 2's encoding of a prompt: box corners as points labelled 2 and 3, then the clicks,
        scaled from frame pixels to the model's input square."""
        coords, labels = [], []
        if prompt.box_xywh is not None:
            x, y, w, h = prompt.box_xywh
            coords += [[x, y], [x + w, y + h]]
            labels += [2, 3]
        if prompt.points_xy is not None:
            coords += prompt.points_xy.tolist()
            labels += prompt.point_labels.tolist()
        points = torch.tensor(coords, dtype=torch.float32)[None] / torch.tensor([encoded.width, encoded.height])
        return {
            "point_coords": (points * self.image_size).to(self.device),
            "point_labels": torch.tensor([labels], dtype=torch.int32, device=self.device),
        }

    def _new_memory(self) -> ObjectMemory:
        return ObjectMemory(self.model.num_maskmem, self.model.max_obj_ptrs_in_encoder, self.model.max_cond_frames_in_attn)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.autocast:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    yield
            else:
                yield


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor onto ``device`` without waiting for the device's queue (a plain ``.to``
    from pageable memory waits for every queued kernel first)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _normalisation_table() -> torch.Tensor:
    """``(3, 256)`` float32: each channel's normalised value of every uint8 level, computed as sam2's
    ``load_video_frames`` does per pixel (float64 ``/ 255``, float32, ``(x - mean) / std``), so a
    lookup gives bit-identical input."""
    levels = torch.from_numpy(np.arange(256) / 255.0).float()
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None]
    return (levels[None] - mean) / std


def _upsample(low_res: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(low_res, size=(size, size), mode="bilinear", align_corners=False)


def _fill_holes_available() -> bool:
    """SAM 2's hole filling needs its compiled ``sam2._C`` extension (CUDA builds only)."""
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


def _fill_holes_in(low_res: torch.Tensor, area: int) -> torch.Tensor:
    from sam2.utils.misc import fill_holes_in_mask_scores

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sam2 turns a failing kernel into a warning; make it an error
        return fill_holes_in_mask_scores(low_res, area)
