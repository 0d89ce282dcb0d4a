"""``memstream reconstruct``: the 3D memory over an RGB-D source (or RGB and a depth model), to a folder.

    memstream reconstruct data/tum/rgbd_dataset_freiburg3_walking_xyz --out runs/walking
    memstream reconstruct "synthetic://dynamic_room?seed=1&frames=300" --out runs/room --points
    memstream reconstruct walk.mp4 --out runs/walk --fov-deg 65 \
        --depth-model depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf

``memstream run SOURCE --config reconstruct`` runs the same; with ``--track`` the tracking stage
runs first and its masks keep tracked objects out of the static map.
"""

from __future__ import annotations

import argparse
import json
from typing import get_args

from memstream.embodied.map3d.types import MaskSource, PoseMode
from memstream.streaming.cli import add_output_args, print_summary
from memstream.streaming.errors import ConfigError
from memstream.streaming.paths import check_local_path, prepare_output_dir

STAGE = "stages.map3d.options"


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Entry point of the ``memstream.commands`` group."""
    rec = sub.add_parser("reconstruct", help="static map + dynamic objects from an RGB-D source (Mem4D-style 3D memory)")
    rec.add_argument("source", help="TUM RGB-D folder, synthetic://dynamic_room, a simulator...")
    add_output_args(rec)
    rec.add_argument("--voxel", type=float, default=None, help="voxel size, metres (default: PSMConfig.voxel_m)")
    rec.add_argument("--masks", default=None, metavar="SOURCES",
                     help="dynamic mask sources, comma-separated: tracking, ground_truth, geometry (default all)")
    rec.add_argument("--pose", choices=get_args(PoseMode), default=None,
                     help="camera poses: given with the frames, estimated by registration to the map, or auto (default)")
    mono = rec.add_argument_group("RGB-only sources (frames without depth or intrinsics)")
    mono.add_argument("--depth-model", default=None, metavar="PATH_OR_ID",
                      help="monocular depth model (transformers) for frames without depth; metric checkpoints only, "
                           "e.g. depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf")
    mono.add_argument("--depth-device", default=None, help="device of the depth model: auto (default), cpu, cuda, cuda:N")
    mono.add_argument("--relative-depth-scale", type=float, default=None, metavar="S",
                      help="accept a relative depth model with 1/depth_m = S * prediction + T (S, T measured by you)")
    mono.add_argument("--relative-depth-shift", type=float, default=None, metavar="T", help="T above (default 0)")
    mono.add_argument("--fov-deg", type=float, default=None,
                      help="horizontal field of view for frames without intrinsics (default 60 with --depth-model)")
    mono.add_argument("--fx", type=float, default=None, help="focal length in pixels instead of --fov-deg")
    mono.add_argument("--fy", type=float, default=None, help="vertical focal length in pixels (default: --fx)")
    rec.add_argument("--points", action="store_true", help="write static.ply as points instead of a mesh")
    rec.add_argument("--every-frame", action="store_true", help="write dynamic/<object>_<frame>.ply on every frame")
    rec.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    rec.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    rec.add_argument("--no-progress", action="store_true")
    rec.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    rec.set_defaults(handler=cmd_reconstruct)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    overrides = []
    if args.voxel is not None:
        overrides.append(f"{STAGE}.psm.voxel_m={args.voxel}")
    if args.masks is not None:
        sources = [s.strip() for s in args.masks.split(",") if s.strip()]
        unknown = set(sources) - set(get_args(MaskSource))
        if unknown:
            raise ConfigError(f"unknown --masks source(s) {sorted(unknown)}", f"Use {', '.join(get_args(MaskSource))}")
        overrides.append(f"{STAGE}.dynamic_masks={json.dumps(sources)}")
    if args.pose is not None:
        overrides.append(f"{STAGE}.pose={args.pose}")
    check_local_path(args.depth_model, what="model folder", kind="folder",
                     fix="A local depth model is a folder with config.json, weights and preprocessor_config.json "
                         "(save_pretrained); or pass a hub id such as depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf")
    overrides += _rgb_only_overrides(args)
    if args.points:
        overrides.append(f"{STAGE}.static=points")
    if args.every_frame:
        overrides.append(f"{STAGE}.dynamic=every_frame")
    if args.max_frames is not None:
        overrides.append(f"source.max_frames={args.max_frames}")
    from memstream.streaming.config import load_config  # sources: numpy, OpenCV (after the flags are checked)

    config = load_config("reconstruct", overrides + list(args.overrides))
    prepare_output_dir(args.out, overwrite=args.overwrite)
    from memstream.streaming.pipeline.run import run_pipeline

    summary = run_pipeline(args.source, config, args.out, progress=not args.no_progress, label="memstream reconstruct")
    print_summary(summary, args.out)
    return 130 if summary["stop_reason"] == "interrupted" else 0


def _rgb_only_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides of the depth model and camera flags (strings JSON-quoted: YAML reads them)."""
    flags = {"depth_model": args.depth_model, "depth_device": args.depth_device,
             "relative_depth_scale": args.relative_depth_scale, "relative_depth_shift": args.relative_depth_shift,
             "fov_deg": args.fov_deg, "fx_px": args.fx, "fy_px": args.fy}
    return [f"{STAGE}.{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
