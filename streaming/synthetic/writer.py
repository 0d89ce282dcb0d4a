"""``memstream synth``: write a synthetic scene to disk in formats other tools read.

Layout of the output folder::

    video.mp4                  H.264 video of the RGB frames
    gt/<id>.txt                LaSOT boxes: one "x,y,w,h" line per frame, "0,0,0,0" when absent
    gt/<id>_full_occlusion.txt LaSOT flags, one comma-separated line of 0/1 (in view, nothing visible)
    gt/<id>_out_of_view.txt    LaSOT flags, one comma-separated line of 0/1 (outside the image)
    masks/<index>.png          uint16 instance ids (0 = background), lossless
    rgb/<t>.png, depth/<t>.png TUM RGB-D layout: depth in uint16 units of 1/5000 m, 0 = no depth
    rgb.txt, depth.txt         TUM lists: "timestamp filename"
    groundtruth.txt            TUM poses: "timestamp tx ty tz qx qy qz qw" (world_from_cam)
    scene.json                 objects (id, name, role, shape, dynamic), camera intrinsics, parameters

The scene is written into ``<out>.partial`` and renamed at the end, so a folder named ``<out>``
is always complete; an interrupted run leaves only the ``.partial`` folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from streaming.errors import ConfigError
from streaming.geometry import pose_to_tum
from streaming.synthetic.presets import build_scene, parse_uri
from streaming.synthetic.render import Renderer
from streaming.synthetic.scene import SceneSpec
from streaming.videoio import VideoWriter

TUM_DEPTH_SCALE = 5000.0


def write_scene(scene: str | SceneSpec, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Render ``scene`` (a ``synthetic://`` URI, a preset name, or a SceneSpec) into ``out_dir``.

    Returns:
        The output folder.

    Raises:
        ConfigError: ``out_dir`` exists and is not empty while ``overwrite`` is False, or the URI is bad.
    """
    spec, uri = _resolve(scene)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out} already exists and is not empty", "Pass --overwrite or another --out")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for sub in ("gt", "masks", "rgb", "depth"):
        (partial / sub).mkdir(parents=True)
    renderer = Renderer(spec)
    n = len(spec.objects)
    boxes = np.zeros((spec.num_frames, n, 4), np.int64)
    full_occlusion = np.zeros((spec.num_frames, n), np.int64)
    out_of_view = np.zeros((spec.num_frames, n), np.int64)
    rgb_lines, depth_lines, pose_lines = [], [], []
    with VideoWriter(partial / "video.mp4", spec.fps) as video:
        for i in range(spec.num_frames):
            frame = renderer.render(i)
            stamp = f"{spec.time_of(i):.6f}"
            video.write(frame.rgb)
            cv2.imwrite(str(partial / "rgb" / f"{stamp}.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
            depth_units = np.round(frame.depth_m * TUM_DEPTH_SCALE)
            cv2.imwrite(str(partial / "depth" / f"{stamp}.png"), np.clip(depth_units, 0, 65535).astype(np.uint16))
            cv2.imwrite(str(partial / "masks" / f"{i:06d}.png"), frame.instance_mask.astype(np.uint16))
            rgb_lines.append(f"{stamp} rgb/{stamp}.png")
            depth_lines.append(f"{stamp} depth/{stamp}.png")
            pose_lines.append(stamp + " " + " ".join(f"{v:.9f}" for v in pose_to_tum(frame.pose)))
            visible = frame.visible_px > 0
            boxes[i][visible] = np.round(frame.boxes_xywh[visible]).astype(np.int64)
            out_of_view[i] = frame.amodal_px == 0
            full_occlusion[i] = (frame.amodal_px > 0) & ~visible
    _write_lasot(partial / "gt", spec, boxes, full_occlusion, out_of_view)
    _write_tum_lists(partial, rgb_lines, depth_lines, pose_lines)
    (partial / "scene.json").write_text(json.dumps(_describe(spec, uri, renderer), indent=2))
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out


def _resolve(scene: str | SceneSpec) -> tuple[SceneSpec, str | None]:
    if isinstance(scene, SceneSpec):
        return scene, None
    uri = scene if scene.startswith("synthetic://") else f"synthetic://{scene}"
    preset, params = parse_uri(uri)
    return build_scene(preset, params), uri


def _write_lasot(folder: Path, spec: SceneSpec, boxes, full_occlusion, out_of_view) -> None:
    for j, obj in enumerate(spec.objects):
        lines = "\n".join(",".join(str(v) for v in box) for box in boxes[:, j])
        (folder / f"{obj.object_id}.txt").write_text(lines + "\n")
        (folder / f"{obj.object_id}_full_occlusion.txt").write_text(",".join(map(str, full_occlusion[:, j])) + "\n")
        (folder / f"{obj.object_id}_out_of_view.txt").write_text(",".join(map(str, out_of_view[:, j])) + "\n")


def _write_tum_lists(folder: Path, rgb_lines, depth_lines, pose_lines) -> None:
    header = "# {what}\n# file: memstream synthetic scene\n# timestamp {columns}\n"
    (folder / "rgb.txt").write_text(header.format(what="color images", columns="filename") + "\n".join(rgb_lines) + "\n")
    (folder / "depth.txt").write_text(header.format(what="depth maps", columns="filename") + "\n".join(depth_lines) + "\n")
    (folder / "groundtruth.txt").write_text(
        header.format(what="ground truth trajectory", columns="tx ty tz qx qy qz qw") + "\n".join(pose_lines) + "\n"
    )


def _describe(spec: SceneSpec, uri: str | None, renderer: Renderer) -> dict:
    k = renderer.intrinsics
    return {
        "uri": uri,
        "preset": spec.name,
        "seed": spec.seed,
        "frames": spec.num_frames,
        "fps": spec.fps,
        "width": renderer.width,
        "height": renderer.height,
        "intrinsics": {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]},
        "depth_scale": TUM_DEPTH_SCALE,
        "target_id": next((o.object_id for o in spec.objects if o.role == "target"), None),
        "objects": [
            {
                "id": o.object_id,
                "name": o.name,
                "role": o.role,
                "shape": o.shape,
                "half_extent_m": list(o.half_extent_m),
                "color": list(o.appearance.color_a),
                "texture_seed": o.appearance.texture_seed,
                "is_dynamic": o.is_dynamic,
            }
            for o in spec.objects
        ],
    }
