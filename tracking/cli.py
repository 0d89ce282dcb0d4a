"""``memstream track`` and ``memstream eval-track`` (added to the ``memstream`` command through the
``memstream.commands`` entry point, so ``streaming`` never imports ``tracking``).

``track`` is ``memstream run`` with the tracking stage configured from the command line: the boxes
become prompts for objects 1, 2, ... in the order given, a checkpoint selects the SAM 2 backend
(without one, the weight-free classical backend runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memstream.streaming.cli import add_output_args, print_summary
from memstream.streaming.errors import ConfigError
from memstream.streaming.paths import prepare_output_dir
from memstream.tracking.names import check_unique_names, parse_named_box

STAGE = "stages.tracking.options"
SELECTIONS = ("samurai", "affinity")  # tracker.SelectionMode's (a test keeps them equal; the CLI starts without numpy)
SIZE_BY_NAME = {"tiny": "t", "small": "s", "base_plus": "bp", "base-plus": "bp", "large": "l",
                "hiera_t": "t", "hiera_s": "s", "hiera_b+": "bp", "hiera_l": "l"}


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Entry point of the ``memstream.commands`` group."""
    track = sub.add_parser("track", help="track boxed objects through a source (SAMURAI)")
    track.add_argument("source", help="video file, image folder, cam:N, rtsp://..., synthetic://PRESET")
    track.add_argument("--box", action="append", default=[], metavar="[NAME:]X,Y,W,H",
                       help="an object's box on the first frame, pixels, optionally named "
                            "(cup:120,80,60,90); "
                            "repeat for more objects (ids 1, 2, ...)")
    track.add_argument("--point", action="append", default=[], metavar="ID:X,Y[:LABEL]",
                       help="a click for object ID (label 1 on the object, 0 background); alone or with its box")
    track.add_argument("--frame", type=int, default=0, help="frame index the boxes and points refer to (default 0)")
    _model_args(track)
    add_output_args(track)
    track.add_argument("--masks", action="store_true", help="also write masks/<frame>.png")
    track.add_argument("--video", action="store_true", help="also write tracking.mp4 with the tracks drawn")
    track.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    track.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    track.add_argument("--no-progress", action="store_true")
    track.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    track.set_defaults(handler=cmd_track)

    evaluate = sub.add_parser("eval-track", help="one-pass evaluation (AUC, P, Pnorm) on a LaSOT/GOT-10k folder")
    evaluate.add_argument("dataset", type=Path, help="LaSOT, GOT-10k or `memstream synth` folder")
    _model_args(evaluate)
    add_output_args(evaluate, help="folder for <sequence>.txt and ope.json")
    evaluate.add_argument("--max-sequences", type=int, default=None)
    evaluate.add_argument("--protocol", choices=["lasot", "got10k"], default=None,
                          help="absent frames count as failures (lasot) or are left out (got10k); default by dataset")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    evaluate.set_defaults(handler=cmd_eval_track)


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="SAM 2.1 checkpoint (.pt path or hub id); none: classical backend")
    parser.add_argument("--config", default=None, help="preset or YAML (default: track, or samurai_<size> with --checkpoint)")
    parser.add_argument("--selection", choices=SELECTIONS, default=None, help="default: the config's (samurai)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")


def tracking_config(args: argparse.Namespace, extra: list[str]):
    """The run config of ``track`` / ``eval-track`` with the command line's choices applied."""
    from memstream.streaming.config import load_config
    from memstream.tracking.stage import check_checkpoint

    check_checkpoint(args.checkpoint)
    name = args.config or (f"samurai_{guess_size(args.checkpoint)}" if args.checkpoint else "track")
    overrides = list(extra)
    if args.checkpoint:
        overrides += [f"{STAGE}.backend=sam2", f"{STAGE}.sam2.checkpoint={json.dumps(args.checkpoint)}"]
    if args.selection:
        overrides.append(f"{STAGE}.selection={args.selection}")
    if args.device:
        overrides.append(f"{STAGE}.sam2.device={json.dumps(args.device)}")
    config = load_config(name, overrides + list(args.overrides))
    if "tracking" not in [s.name for s in config.enabled_stages]:
        raise ConfigError(f"config {name!r} has no enabled tracking stage", "Use --config track or a samurai_* preset")
    return config


def guess_size(checkpoint: str) -> str:
    """``t``/``s``/``bp``/``l`` from a checkpoint's file name or hub id (``t`` when it says nothing;
    the model loader then checks the weights against the config and names the right one)."""
    name = Path(checkpoint).name.lower()
    for key, size in SIZE_BY_NAME.items():
        if key in name:
            return size
    return "t"


def parse_point(text: str) -> tuple[int, list[float], int]:
    """``ID:X,Y[:LABEL]`` -> (object id, [x, y], label)."""
    parts = text.split(":")
    try:
        object_id, xy = int(parts[0]), [float(v) for v in parts[1].split(",")]
        label = int(parts[2]) if len(parts) > 2 else 1
        valid = len(parts) <= 3 and len(xy) == 2 and object_id >= 1 and label in (0, 1)
    except (ValueError, IndexError):
        valid = False
    if not valid:
        raise ConfigError(f"--point {text!r} is not ID:X,Y[:LABEL]", "e.g. --point 1:140,95 or --point 1:60,40:0 (background)")
    return object_id, xy, label


def cmd_track(args: argparse.Namespace) -> int:
    if not args.box and not args.point:
        raise ConfigError("no --box given", "Give each object's box on the first frame: --box X,Y,W,H")
    boxes = [parse_named_box(b) for b in args.box]
    check_unique_names([name for name, _ in boxes])
    prompts = {i: {"object_id": i, "frame": args.frame, "box": box, **({"name": name} if name else {})}
               for i, (name, box) in enumerate(boxes, start=1)}
    for text in args.point:
        object_id, xy, label = parse_point(text)
        prompt = prompts.setdefault(object_id, {"object_id": object_id, "frame": args.frame})
        prompt.setdefault("points", []).append(xy)
        prompt.setdefault("labels", []).append(label)
    prompts = list(prompts.values())
    extra = [f"{STAGE}.prompts={json.dumps(prompts)}", f"{STAGE}.gt_objects=[]"]
    extra += [f"{STAGE}.outputs.masks={json.dumps(args.masks)}", f"{STAGE}.outputs.video={json.dumps(args.video)}"]
    if args.max_frames is not None:
        extra.append(f"source.max_frames={args.max_frames}")
    config = tracking_config(args, extra)
    prepare_output_dir(args.out, overwrite=args.overwrite)
    from memstream.streaming.pipeline.run import run_pipeline

    summary = run_pipeline(args.source, config, args.out, progress=not args.no_progress, label="memstream track")
    print_summary(summary, args.out)
    return 130 if summary["stop_reason"] == "interrupted" else 0


def cmd_eval_track(args: argparse.Namespace) -> int:
    from memstream.tracking.eval.run import evaluate_tracker, print_report

    config = tracking_config(args, ["stages.tracking.options.outputs.scores=false"])
    prepare_output_dir(args.out, overwrite=args.overwrite)
    report = evaluate_tracker(args.dataset, config, args.out, max_sequences=args.max_sequences, protocol=args.protocol,
                              progress=not args.no_progress)
    print_report(report)
    print(f"wrote {args.out / 'ope.json'}")
    return 0
