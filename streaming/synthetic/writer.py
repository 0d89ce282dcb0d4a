"""``memstream synth``: write a synthetic scene to disk in formats other tools read.

Layout of the output folder::

    video.mp4                  H.264 video of the RGB frames
    gt/<id>.txt                LaSOT boxes: one "x,y,w,h" line per frame (0-based px), "0,0,0,0" if absent
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

from memstream.streaming.errors import ConfigError
from memstream.streaming.geometry import pose_to_tum
from memstream.streaming.synthetic.build import Scene, build_scene
from memstream.streaming.synthetic.scene import SceneSpec
from memstream.streaming.videoio import VideoWriteError, VideoWriter

TUM_DEPTH_SCALE = 5000.0  # depth PNG units per metre, as in the TUM RGB-D benchmark


def write_scene(scene: str | SceneSpec, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Render ``scene`` (a ``synthetic://`` URI, ``PRESET?params``, or a SceneSpec) into ``out_dir``.

    Returns:
        The output folder.

    Raises:
        ConfigError: the URI is bad, or ``out_dir`` is a file, or exists and is not empty while
            ``overwrite`` is False, or cannot be created.
        VideoWriteError: a file in the folder cannot be written.

    Example:
        >>> import tempfile, os
        >>> out = write_scene("demo?frames=3&size=64x48", os.path.join(tempfile.mkdtemp(), "demo"))
        >>> sorted(p.name for p in out.iterdir())[:4]
        ['depth', 'depth.txt', 'groundtruth.txt', 'gt']
    """
    uri = None if isinstance(scene, SceneSpec) else _as_uri(scene)
    spec = scene if isinstance(scene, SceneSpec) else build_scene(uri)
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    partial = out.with_name(out.name + ".partial")
    try:
        if partial.exists():
            shutil.rmtree(partial)
        for sub in ("gt", "masks", "rgb", "depth"):
            (partial / sub).mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create output folder {partial}: {exc}", "Choose a writable --out folder"
        ) from exc
    scene_frames = Scene(spec, source_id=uri)
    _write_frames(scene_frames, partial)
    (partial / "scene.json").write_text(json.dumps(_describe(scene_frames, uri), indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out


def _as_uri(scene: str) -> str:
    return scene if scene.startswith("synthetic://") else f"synthetic://{scene}"


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} is a file", "Pass a folder path to --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"output folder {out} already exists and is not empty", "Pass --overwrite or another --out"
        )


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise VideoWriteError(f"cannot write image {path}", "Check free disk space and permissions")


def _write_frames(scene: Scene, folder: Path) -> None:
    """Render every frame once and write video, images, masks, TUM lists and LaSOT boxes."""
    spec = scene.spec
    n = len(spec.objects)
    boxes = np.zeros((spec.num_frames, n, 4), np.int64)
    full_occlusion = np.zeros((spec.num_frames, n), np.int64)
    out_of_view = np.zeros((spec.num_frames, n), np.int64)
    rgb_lines, depth_lines, pose_lines = [], [], []
    with VideoWriter(folder / "video.mp4", spec.fps) as video:
        for i in range(spec.num_frames):
            frame = scene.render(i)
            stamp = f"{frame.time_s:.6f}"
            video.write(frame.rgb)
            _imwrite(folder / "rgb" / f"{stamp}.png", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
            depth_units = np.clip(np.round(frame.depth_m * TUM_DEPTH_SCALE), 0, 65535).astype(np.uint16)
            _imwrite(folder / "depth" / f"{stamp}.png", depth_units)
            _imwrite(folder / "masks" / f"{i:06d}.png", frame.instance_mask.astype(np.uint16))
            rgb_lines.append(f"{stamp} rgb/{stamp}.png")
            depth_lines.append(f"{stamp} depth/{stamp}.png")
            pose_lines.append(stamp + " " + " ".join(f"{v:.9f}" for v in pose_to_tum(frame.pose)))
            visible = frame.visible_px > 0
            boxes[i][visible] = np.round(frame.boxes_xywh[visible]).astype(np.int64)
            out_of_view[i] = frame.amodal_px == 0
            full_occlusion[i] = (frame.amodal_px > 0) & ~visible
    _write_lasot(folder / "gt", spec, boxes, full_occlusion, out_of_view)
    _write_tum_lists(folder, rgb_lines, depth_lines, pose_lines)


def _write_lasot(folder: Path, spec: SceneSpec, boxes, full_occlusion, out_of_view) -> None:
    for j, obj in enumerate(spec.objects):
        lines = "\n".join(",".join(str(v) for v in box) for box in boxes[:, j])
        (folder / f"{obj.object_id}.txt").write_text(lines + "\n")
        (folder / f"{obj.object_id}_full_occlusion.txt").write_text(
            ",".join(map(str, full_occlusion[:, j])) + "\n"
        )
        (folder / f"{obj.object_id}_out_of_view.txt").write_text(",".join(map(str, out_of_view[:, j])) + "\n")


def _write_tum_lists(folder: Path, rgb_lines, depth_lines, pose_lines) -> None:
    header = "# {what}\n# file: memstream synthetic scene\n# timestamp {columns}\n"
    (folder / "rgb.txt").write_text(
        header.format(what="color images", columns="filename") + "\n".join(rgb_lines) + "\n"
    )
    (folder / "depth.txt").write_text(
        header.format(what="depth maps", columns="filename") + "\n".join(depth_lines) + "\n"
    )
    (folder / "groundtruth.txt").write_text(
        header.format(what="ground truth trajectory", columns="tx ty tz qx qy qz qw")
        + "\n".join(pose_lines)
        + "\n"
    )


def _describe(scene: Scene, uri: str | None) -> dict:
    """The content of scene.json: parameters, camera, and one record per object."""
    spec, k = scene.spec, scene.intrinsics
    camera, lighting = spec.camera, spec.lighting
    return {
        "uri": uri,
        "preset": spec.name,
        "seed": spec.seed,
        "frames": spec.num_frames,
        "fps": spec.fps,
        "width": scene.renderer.width,
        "height": scene.renderer.height,
        "intrinsics": {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]},
        "depth_scale": TUM_DEPTH_SCALE,
        "conventions": {
            "boxes": "x,y,w,h in 0-based pixels, tight around the visible pixels; 0,0,0,0 when none is",
            "pose": "world_from_cam, OpenCV camera axes (x right, y down, z forward), metres",
            "target": "object 1 is the tracking target (role 'target'); distractors look the same",
        },
        "camera": {
            "hfov_deg": camera.hfov_deg,
            "moves": not (
                camera.position.is_constant and camera.yaw.is_constant and camera.pitch.is_constant
            ),
        },
        "lighting_changes": not lighting.gain.is_constant,
        "target_id": next((o.object_id for o in spec.objects if o.role == "target"), None),
        "objects": [
            {
                "id": o.object_id,
                "name": o.name,
                "role": o.role,
                "shape": o.shape,
                "half_extent_m": list(o.half_extent_m),
                "color": list(o.appearance.color_a),
                "pattern": o.appearance.pattern,
                "texture_seed": o.appearance.texture_seed,
                "is_dynamic": o.is_dynamic,
            }
            for o in spec.objects
        ],
    }
