"""``memstream vla-collect`` / ``vla-train`` / ``vla-eval``: the memory policy on MIKASA-Robo demonstrations.

    memstream vla-collect --task RememberColor3 --episodes 250 --workers 2 --out demos/rc3
    memstream vla-train --demos demos/rc3 --variant bank --memory-length 16 --steps 2000 --out runs/rc3_bank
    memstream vla-train --demos demos/rc3 --variant bank --steps 4000 --out runs/rc3_bank --resume
    memstream vla-eval --policy runs/rc3_bank --episodes 100 --videos 3 --out runs/rc3_bank_eval
    memstream vla-export --demos demos/rc3 --out demos/rc3-lerobot
    memstream vla-relabel --demos demos/im_dagger1 --out demos/im_dagger1_relabelled

``vla-collect`` rolls out the task's scripted expert on seeds ``--seed ..`` and writes the
demonstrations (LeRobot v2.1 layout, see :mod:`memstream.embodied.envs.mikasa.dataset`); with
``--workers N`` N processes each collect a contiguous share of the seeds into ``--out/.parts/`` and
the shares are merged in seed order (a failed worker leaves its finished share, itself a dataset).
``vla-train`` writes the policy (``config.json``, ``model.safetensors``) and ``mikasa.json`` (task,
camera, rendering, action space, training figures) to ``--out``, with a resumable checkpoint in
``--out/checkpoint/`` every ``--checkpoint-every`` steps. ``vla-eval`` writes ``results.json``
(rewritten after every episode: valid if the run is stopped) with one row per episode (seed,
success, length, seconds in the policy and the simulator) and the success rate beside the task's
chance level, and the first ``--videos`` episodes as H.264 files under ``videos/``. Evaluation
seeds default to the suite's benchmark seeds (4242424242 + i), disjoint from the demonstrations'.
``vla-eval --wipe-memory`` (a control) empties the bank where a RememberColor cue phase ends.
``vla-export`` writes a copy of the demonstrations in LeRobot's v3.0 format, which lerobot >= 0.4's
``LeRobotDataset`` opens (see :mod:`memstream.embodied.envs.mikasa.lerobot_export`).
``vla-relabel`` copies a collection with every frame labelled again by the scripted expert as it is
now, from the inputs the expert read when it was collected (``observation.environment_state``):
DAgger rounds kept consistent with a changed expert, without the simulator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.cli import add_output_args
from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.paths import claim_output_dir, holds_output_dirs

VARIANTS = ("bank", "fifo", "no_memory")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Entry point of the ``memstream.commands`` group."""
    collect = sub.add_parser("vla-collect", help="roll out a MIKASA-Robo task's scripted expert and store the "
                                                 "demonstrations (Parquet + H.264, LeRobot v2.1 layout)")
    collect.add_argument("--task", required=True, help="e.g. RememberColor3, RememberColor5, RememberColor9, InterceptMedium")
    collect.add_argument("--episodes", type=int, default=250, help="expert rollouts (MemoryVLA's protocol: 250)")
    collect.add_argument("--seed", type=int, default=0,
                         help="simulator seed of the first episode; episode i uses seed + i (default 0: disjoint from "
                              "the evaluation seeds; give a second collection of the same task its own range)")
    collect.add_argument("--cameras", nargs="+", default=None,
                         help="cameras rendered and stored (default both, base_camera and hand_camera; each one "
                              "left out makes a step faster)")
    collect.add_argument("--image-size", type=int, default=128, help="square image side in pixels (MemoryVLA: 128)")
    collect.add_argument("--keep-failures", action="store_true",
                         help="also store the episodes the expert failed (flagged success: false)")
    collect.add_argument("--workers", type=int, default=1, help="parallel collector processes (default 1)")
    collect.add_argument("--threads", type=int, default=None,
                         help="torch CPU threads of each collecting process (default: torch's with one worker, 1 "
                              "with several); pass 1 when other commands share the cores (two collections on "
                              "torch's default side by side on 2 cores took ~100 s an episode, against 6 s on 1)")
    collect.add_argument("--policy", type=Path, default=None,
                         help="DAgger: a vla-train folder for this task drives the rollouts and the expert labels every "
                              "state it visits (the stored actions stay the expert's; every episode is kept, flagged "
                              "with the driven rollout's success); train on these folders beside the expert's")
    collect.add_argument("--expert-mix", type=float, default=0.0,
                         help="with --policy: the probability that a step executes the expert's action instead "
                              "(DAgger's beta; default 0: the policy alone)")
    collect.add_argument("--expert-catches", action="store_true",
                         help="with --policy, InterceptMedium: the expert acts until the rolling ball is caught and "
                              "the policy from two steps later, so every rollout labels the push after a catch")
    add_output_args(collect)
    collect.add_argument("--no-progress", action="store_true")
    collect.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    collect.set_defaults(handler=cmd_vla_collect)

    export = sub.add_parser("vla-export", help="copy vla-collect demonstrations into a LeRobot v3.0 dataset "
                                               "(what lerobot >= 0.4's LeRobotDataset reads)")
    export.add_argument("--demos", type=Path, required=True, help="a vla-collect folder (read, never changed)")
    add_output_args(export, help="the new LeRobot v3.0 dataset folder")
    export.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    export.set_defaults(handler=cmd_vla_export)

    relabel = sub.add_parser("vla-relabel", help="copy vla-collect demonstrations with every frame labelled again "
                                                 "by the scripted expert as it is now (no simulator needed)")
    relabel.add_argument("--demos", type=Path, required=True,
                         help="a vla-collect folder that stores the expert's inputs (read, never changed)")
    add_output_args(relabel, help="the new, relabelled demonstration folder")
    relabel.add_argument("--no-progress", action="store_true")
    relabel.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    relabel.set_defaults(handler=cmd_vla_relabel)

    train = sub.add_parser("vla-train", help="train the memory policy on MIKASA-Robo demonstrations (LeRobot layout)")
    train.add_argument("--demos", type=Path, nargs="+", required=True,
                       help="a folder written by write_demonstrations, or several of one task collected from disjoint "
                            "seed ranges (e.g. in parallel), read in the order given")
    train.add_argument("--variant", default="bank", help=f"memory: {', '.join(VARIANTS)} (default bank)")
    train.add_argument("--memory-length", type=int, default=16, help="bank capacity L (MemoryVLA: 16; ablation 4, 64)")
    train.add_argument("--bank-heads", type=int, default=1,
                       help="retrieval attention heads of the bank (MemoryVLA's openvla code: 1, dexbotic: 4); "
                            "must divide the streams' channel counts (64 and 128)")
    train.add_argument("--camera", default="base_camera", help="the camera the policy reads (default base_camera)")
    train.add_argument("--max-episodes", type=int, default=None, help="use only the first N demonstrations")
    train.add_argument("--steps", type=int, default=1000, help="AdamW steps on batches of whole episodes")
    train.add_argument("--batch-episodes", type=int, default=8)
    train.add_argument("--checkpoint-every", type=int, default=100)
    train.add_argument("--seed", type=int, default=0, help="initial weights and batch sampling")
    train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint (same settings)")
    train.add_argument("--loss-frames", type=int, default=None,
                       help="frames per episode in the action loss, drawn at random each step (default all)")
    train.add_argument("--bank-gradients", action=argparse.BooleanOptionalAction, default=True,
                       help="backpropagate through the bank: the loss reaches the frames that wrote the entries it "
                            "read, e.g. the cue (default on; --no-bank-gradients stores them detached, as MemoryVLA)")
    train.add_argument("--augment-shift", type=int, default=4,
                       help="random shift of each training frame by up to N pixels (default 4; 0: off)")
    train.add_argument("--augment-hue", type=float, default=0.0,
                       help="turn the hue of each training episode's frames by one random fraction of a full circle "
                            "in [-X, X] (0: off, the default; 0.5: any hue; see MemoryVLAConfig.augment_hue)")
    train.add_argument("--state-noise", type=float, default=0.1,
                       help="std of Gaussian noise on the normalised training states (default 0.1; 0: off)")
    train.add_argument("--inference-noise", type=float, default=1.0,
                       help="flow sampler's starting noise scale at inference, saved with the policy (0: deterministic)")
    train.add_argument("--perceptual-pool", choices=("avg", "max"), default="avg",
                       help="a perceptual token's summary of its image region: avg (one linear embedding of the "
                            "whole patch, as before) or max (the channel-wise maximum over finer patches, so a "
                            "few-pixel cue keeps its colour; default avg)")
    train.add_argument("--perceptual-grid", type=int, default=4, help="perceptual tokens per image side (default 4)")
    train.add_argument("--perceptual-subgrid", type=int, default=4,
                       help="finer patches per token side with --perceptual-pool max (default 4)")
    train.add_argument("--fine-position", action="store_true",
                       help="with --perceptual-pool max: a learned embedding per fine patch, so a token keeps where "
                            "in its region a feature was (two cubes sharing a token stay apart)")
    train.add_argument("--image-crop", type=int, nargs=3, default=None, metavar=("TOP", "LEFT", "SIZE"),
                       help="the policy sees this square of every image (pixels of the collected images), resized "
                            "back to the full size: a fixed camera's workspace at higher resolution for the same "
                            "tokens (RememberColor5 / 9 at 128 px: 50 40 48; see MemoryVLAConfig.image_crop)")
    train.add_argument("--prior-readout", type=int, default=0, metavar="H",
                       help="with --chunk-prior: H heads of attention pooling over the image tokens, scored by one MLP "
                            "shared by every token (where the remembered colour matches), read by the prior in place of "
                            "the flattened tokens (0: off)")
    train.add_argument("--head-film", action="store_true",
                       help="the fused cognitive token and the state modulate the head's perceptual tokens (FiLM)")
    train.add_argument("--chunk-prior", action="store_true",
                       help="an MLP regresses the action chunk and the flow head models the residual (see ChunkPrior)")
    train.add_argument("--goal-loss", type=float, default=0.0,
                       help="weight of the auxiliary loss predicting each demonstration's last state from every "
                            "frame's fused tokens (0: off; see MemoryVLAConfig.goal_loss_weight)")
    train.add_argument("--onset-weight", type=float, default=1.0,
                       help="weight of the action-onset frames in the chunk prior's loss (1: off; needs --chunk-prior; "
                            "see MemoryVLAConfig.onset_loss_weight)")
    train.add_argument("--pointer-loss", type=float, default=0.0, metavar="W",
                       help="weight of a cross-entropy training the chunk prior's first readout head to look at the "
                            "image token of each demonstration's end point (RememberColor: the cued cube), through the "
                            "base camera, from the first moving frame on (0: off; needs --prior-readout; see "
                            "MemoryVLAConfig.pointer_loss_weight)")
    train.add_argument("--readout-offsets", action="store_true",
                       help="each token of the chunk prior's readout also regresses where in it the thing scored is, "
                            "so the pooled place resolves finer than a token (needs --prior-readout; zero at the start, "
                            "so --init-from a policy without them goes on from its function; see "
                            "MemoryVLAConfig.prior_readout_offsets)")
    train.add_argument("--readout-track", type=int, default=0, metavar="K",
                       help="the chunk prior also reads how far each readout head's place moved since each of the K "
                            "earlier frames: where a thing in view goes, not only where it is (the Intercept tasks' "
                            "rolling ball; 0: off; needs --prior-readout; --init-from a policy without one goes on "
                            "from its function; see MemoryVLAConfig.prior_readout_track)")
    train.add_argument("--keypoint-loss", type=float, default=0.0, metavar="W",
                       help="weight of a regression training the place the chunk prior's last readout head pools "
                            "(its soft-argmax) onto the rolling ball, found in every stored frame by its colour "
                            "(Intercept tasks; 0: off; needs --prior-readout; see MemoryVLAConfig.keypoint_loss_weight)")
    train.add_argument("--prefix-episodes", type=int, default=0, metavar="N",
                       help="each step also trains on N more episodes cut just after the arm's first move (the cue, "
                            "the wait and the decision, a third of an episode's frames), so a step decides on more "
                            "episodes for little more compute (0: off; see train_with_checkpoints)")
    train.add_argument("--init-from", type=Path, default=None, metavar="DIR",
                       help="start from the weights of a policy vla-train wrote (a run folder or its checkpoint/; same "
                            "task, camera and architecture), with a new optimizer and schedule: to go on training with "
                            "other training-only settings such as --pointer-loss or --prefix-episodes")
    train.add_argument("--binding-warmup", type=int, default=0, metavar="N",
                       help="before the training, N steps that teach the image encoder, the bank's perceptual stream "
                            "and the chunk prior's readout which object the remembered cue picks, on one decision per "
                            "demonstration (cue frame, last frame before the move, first moving frame) with the pointer "
                            "loss (RememberColor5: 3000; needs --chunk-prior --prior-readout and the bank; 0: off; see "
                            "memstream.embodied.policies.memvla.binding)")
    train.add_argument("--n-action-steps", type=int, default=1,
                       help="actions of each predicted chunk that run before the policy predicts again, saved with the "
                            "policy (default 1: on RememberColor3 executing 4 left the tip 1.3 cm higher than the "
                            "expert and halved the success, 0.12 against 0.25)")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    train.add_argument("--out", type=Path, required=True, help="output folder")
    train.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    train.set_defaults(handler=cmd_vla_train)

    evaluate = sub.add_parser("vla-eval", help="evaluate a vla-train policy on MIKASA-Robo episodes")
    evaluate.add_argument("--policy", type=Path, required=True, help="a folder written by vla-train")
    evaluate.add_argument("--task", default=None, help="must be the policy's task (default: it)")
    evaluate.add_argument("--episodes", type=int, default=100, help="episodes (MemoryVLA's protocol: 100)")
    evaluate.add_argument("--seed", type=int, default=None, help="first episode seed (default the suite's 4242424242)")
    evaluate.add_argument("--videos", type=int, default=3, help="rollout videos of the first N episodes")
    evaluate.add_argument("--inference-noise", type=float, default=None,
                          help="override the policy's flow sampler noise scale (0: deterministic chunks)")
    evaluate.add_argument("--n-action-steps", type=int, default=None,
                          help="override how many actions of each chunk run before the policy predicts again "
                               "(1 .. chunk size; LeRobot's n_action_steps; default: the policy's)")
    evaluate.add_argument("--temporal-ensemble", type=float, default=None, metavar="COEFF",
                          help="ACT's temporal ensembling (LeRobot's temporal_ensemble_coeff): predict a chunk every "
                               "step and execute the exp(-COEFF * i)-weighted average (i = 0 the oldest) of every "
                               "chunk's action for the step, e.g. 0.01; needs n_action_steps 1 (default: off)")
    evaluate.add_argument("--wipe-memory", action="store_true",
                          help="a control: empty the bank when the cue phase ends (RememberColor tasks), so the cue is "
                               "forgotten; a policy that reads it from memory falls to chance")
    evaluate.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    add_output_args(evaluate)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    evaluate.set_defaults(handler=cmd_vla_eval)

    from memstream.embodied.policies.serve import add_arguments, serve_policy

    serve = sub.add_parser("policy-serve", help="serve a memory policy to robots over WebSocket + msgpack "
                                                 "(openpi's wire), one bank per client")
    add_arguments(serve)
    serve.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    serve.set_defaults(handler=serve_policy)


@holds_output_dirs
def cmd_vla_collect(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    from memstream.embodied.envs.mikasa import CAMERAS, merge_demonstrations, resolve_task, write_demonstrations
    from memstream.embodied.envs.mikasa.dataset import check_expert, check_seeds_disjoint

    task = resolve_task(args.task)  # an unknown task, or one that needs downloaded assets: named here
    check_expert(task.name)  # demonstrations need a scripted expert
    for flag, value, default in (("--episodes", args.episodes, 250), ("--workers", args.workers, 1),
                                 ("--image-size", args.image_size, 128),
                                 ("--threads", 1 if args.threads is None else args.threads, 1)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}", f"Pass {flag} {default}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}", "Pass --seed 0")
    cameras = tuple(args.cameras) if args.cameras else CAMERAS
    unknown = [camera for camera in cameras if camera not in CAMERAS]
    if unknown:
        raise ConfigError(f"unknown camera {unknown[0]!r}", f"Pick among {', '.join(CAMERAS)}")
    check_seeds_disjoint(args.seed, args.episodes)
    options = {"image_size": args.image_size, "keep_failures": args.keep_failures, "cameras": cameras}
    if args.policy is not None:
        if args.expert_catches and task.kind != "intercept":
            raise ConfigError(f"--expert-catches hands the episode over after the ball's catch, and {task.name} has no ball",
                              "Drop --expert-catches, or collect InterceptMedium")
        options.update(_dagger_options(args.policy, task.name, args.expert_mix, cameras, args.image_size))
        if args.expert_catches:
            options["expert_catches"] = True
    elif args.expert_mix != 0.0 or args.expert_catches:
        flag = "--expert-mix" if args.expert_mix != 0.0 else "--expert-catches"
        raise ConfigError(f"{flag} needs --policy (the expert alone already executes every step)",
                          f"Drop {flag} or give --policy")
    out = claim_output_dir(args.out, held, overwrite=args.overwrite)
    workers = min(args.workers, args.episodes)
    started = time.perf_counter()
    if workers == 1:
        with _threads(args.threads):
            info = write_demonstrations(out, task.name, args.episodes, seed=args.seed,
                                        progress=False if args.no_progress else None, **_with_driver(options, task.name))
        rollouts, succeeded = args.episodes, round(info["success_rate"] * args.episodes)
    else:
        shares = [(out / ".parts" / f"part-{k:03d}", start, count) for k, (start, count)
                  in enumerate(_shares(args.seed, args.episodes, workers))]
        results = _collect_in_parallel(task.name, shares, options, progress=False if args.no_progress else None,
                                       threads=args.threads or 1)
        rollouts = sum(r["rollouts"] for r in results)
        succeeded = sum(round(r["success_rate"] * r["rollouts"]) for r in results)
        info = merge_demonstrations(out, [folder for folder, _, _ in shares])
        shutil.rmtree(out / ".parts")
    seconds = time.perf_counter() - started
    driven = "policy-driven rollouts labelled by the expert" if args.policy is not None else "expert rollouts"
    print(f"collected {info['total_episodes']} {task.name} demonstrations from {rollouts} {driven} "
          f"(seeds {args.seed}..{args.seed + args.episodes - 1}, success {succeeded / rollouts:.2f}) "
          f"in {seconds:.0f} s ({info['total_episodes'] * 3600 / max(seconds, 1e-9):.0f} an hour, {workers} "
          f"worker{'s' if workers > 1 else ''}): {out}")
    return 0


def _apart(args: argparse.Namespace, fix: str) -> None:
    """A command that copies ``--demos`` into ``--out`` refuses folders inside one another."""
    demos, out = args.demos.resolve(), args.out.resolve()
    if out == demos or demos in out.parents or out in demos.parents:
        raise ConfigError(f"--out {str(args.out)!r} and --demos {str(args.demos)!r} overlap", fix)


@holds_output_dirs
def cmd_vla_export(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    from memstream.embodied.envs.mikasa.lerobot_export import export_lerobot

    _apart(args, "Export to a folder outside the demonstrations")
    info = export_lerobot(args.demos, claim_output_dir(args.out, held, overwrite=args.overwrite))
    print(f"exported {info['total_episodes']} episodes ({info['total_frames']} frames) of {args.demos} "
          f"as a LeRobot v3.0 dataset: {args.out}")
    return 0


@holds_output_dirs
def cmd_vla_relabel(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    from memstream.embodied.envs.mikasa.dataset import relabel_demonstrations

    _apart(args, "Write the relabelled copy to a folder outside the demonstrations")
    info = relabel_demonstrations(claim_output_dir(args.out, held, overwrite=args.overwrite), args.demos,
                                  progress=False if args.no_progress else None)
    print(f"relabelled {info['total_episodes']} episodes of {args.demos}: {info['changed_frames']} of {info['frames']} "
          f"frames ({info['changed_episodes']} episodes) have new labels: {args.out}")
    return 0


def _dagger_options(policy: Path, task: str, expert_mix: float, cameras: tuple[str, ...], image_size: int) -> dict[str, Any]:
    """``vla-collect --policy``'s checks (before the output folder is claimed) and options: the policy
    must be a MIKASA one for this task that reads a collected camera at the collected size."""
    from memstream.embodied.policies.memvla.mikasa import load_mikasa_policy

    if not 0.0 <= expert_mix <= 1.0:
        raise ConfigError(f"--expert-mix must lie in [0, 1], got {expert_mix}", "Pass --expert-mix 0 (the policy drives)")
    _, meta = load_mikasa_policy(policy, task=task)  # another task, another action space: named here
    if meta["camera"] not in cameras:
        raise ConfigError(f"{str(policy)!r} reads the {meta['camera']}, which this collection does not render",
                          f"Add {meta['camera']} to --cameras")
    if int(meta["image_size"]) != image_size or bool(meta.get("camera_housing", False)):
        raise ConfigError(f"{str(policy)!r} was trained on {meta['image_size']} px images"
                          f"{' with the camera housing shown' if meta.get('camera_housing') else ''}, not on what this "
                          f"collection renders ({image_size} px, housing hidden)", f"Pass --image-size {meta['image_size']}")
    return {"policy": str(policy.resolve()), "expert_mix": expert_mix}


def _with_driver(options: dict[str, Any], task: str) -> dict[str, Any]:
    """``write_demonstrations``' keyword arguments from the collect options: a ``policy`` folder
    becomes the driver that acts in each env (loaded once per collecting process)."""
    options = dict(options)
    folder = options.pop("policy", None)
    if folder is None:
        return options
    from memstream.embodied.policies.memvla.mikasa import MikasaPolicyDriver, load_mikasa_policy

    policy, _ = load_mikasa_policy(folder, task=task)
    return {**options, "driver": lambda env: MikasaPolicyDriver(policy, env), "driver_record": {"policy": folder}}


def _shares(seed: int, episodes: int, workers: int) -> list[tuple[int, int]]:
    """(first seed, episodes) of each worker: contiguous, in seed order, sizes differing by at most one."""
    sizes = [episodes // workers + (k < episodes % workers) for k in range(workers)]
    starts = [seed + sum(sizes[:k]) for k in range(workers)]
    return list(zip(starts, sizes, strict=True))


def _collect_share(task: str, folder: str, seed: int, episodes: int, options: dict[str, Any],
                   threads: int = 1) -> dict[str, Any]:
    """One worker process: its share of the rollouts, on ``threads`` torch threads (default one: the
    workers share the cores)."""
    import torch

    from memstream.embodied.envs.mikasa import write_demonstrations

    torch.set_num_threads(threads)
    info = write_demonstrations(folder, task, episodes, seed=seed, **_with_driver(options, task))
    return {"rollouts": info["rollouts"], "success_rate": info["success_rate"]}


def _collect_in_parallel(task: str, shares: list[tuple[Path, int, int]], options: dict[str, Any],
                         progress: bool | None, threads: int = 1) -> list[dict[str, Any]]:
    """Run the shares in spawned processes (the simulator and its renderer are not fork-safe); the
    bar follows the episodes each share has written. A failed share is re-raised naming the shares
    that hold finished episodes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    from memstream.streaming.progress import progress as progress_bar

    def written() -> int:  # complete records only; the workers append to these files as this reads them
        files = [folder / "meta" / "episodes.jsonl" for folder, _, _ in shares]
        return sum(path.read_text().count("\n") for path in files if path.is_file())

    with ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context("spawn")) as pool, \
            progress_bar(f"collect {task} demonstrations", sum(n for _, _, n in shares), unit="episodes", show=progress) as bar:
        futures = [pool.submit(_collect_share, task, str(folder), seed, count, options, threads)
                   for folder, seed, count in shares]
        done = 0
        while not all(future.done() for future in futures):
            wait(futures, timeout=2.0)
            now = written()
            bar.advance(now - done)
            done = now
        failed = [(share, future.exception()) for share, future in zip(shares, futures, strict=True) if future.exception()]
        if failed:
            (folder, seed, count), error = failed[0]
            kept = [str(f) for f, _, _ in shares if (f / "meta" / "info.json").is_file()]
            message = error.what if isinstance(error, MemstreamError) else f"{type(error).__name__}: {error}"
            raise MemstreamError(f"collecting seeds {seed}..{seed + count - 1} failed ({message}); the finished episodes "
                                 f"are kept in {', '.join(kept) or 'no share'}",
                                 "Fix the cause and collect again, or train on the kept shares (vla-train --demos A B ...)"
                                 ) from error
        return [future.result() for future in futures]


@holds_output_dirs
def cmd_vla_train(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    with _threads(args.threads):
        return _vla_train(args, held)


def _vla_train(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    for flag, value, low in (("--steps", args.steps, 1), ("--batch-episodes", args.batch_episodes, 1),
                             ("--checkpoint-every", args.checkpoint_every, 1), ("--memory-length", args.memory_length, 2),
                             ("--bank-heads", args.bank_heads, 1), ("--perceptual-grid", args.perceptual_grid, 1),
                             ("--perceptual-subgrid", args.perceptual_subgrid, 1), ("--prefix-episodes", args.prefix_episodes, 0),
                             ("--binding-warmup", args.binding_warmup, 0),
                             ("--max-episodes", 1 if args.max_episodes is None else args.max_episodes, 1)):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}", f"Pass {flag} {max(low, 8)}")
    if args.variant not in VARIANTS:
        raise ConfigError(f"unknown policy variant {args.variant!r}", f"Choose among {', '.join(VARIANTS)}")
    from memstream.embodied.policies.memvla.configuration_memvla import MemoryVLAConfig, check_crop
    import numpy as np

    from memstream.embodied.policies.memvla.mikasa import (ACTION_SPACE, ball_pixels, demonstration_camera,
                                                           demonstration_seeds, end_point_tokens, init_from_trained,
                                                           load_mikasa_demonstrations, mikasa_policy, pixels_to_grid,
                                                           train_with_checkpoints)
    # every check of the arguments alone comes before the demonstrations load (minutes for 1,000)
    if args.loss_frames is not None and args.loss_frames < 1:
        raise ConfigError(f"--loss-frames must be >= 1, got {args.loss_frames}", "Pass --loss-frames 8 or leave it out")
    if not 0.0 <= args.inference_noise <= 1.0:
        raise ConfigError(f"--inference-noise must be in [0, 1], got {args.inference_noise}", "Pass 0 or 1")
    if not 1 <= args.n_action_steps <= MemoryVLAConfig.chunk_size:
        raise ConfigError(f"--n-action-steps must be in 1..{MemoryVLAConfig.chunk_size} (the chunk size), got {args.n_action_steps}",
                          f"Pass 1 .. {MemoryVLAConfig.chunk_size}")
    if not args.onset_weight > 0.0:
        raise ConfigError(f"--onset-weight must be > 0, got {args.onset_weight}", "Pass 1 (off) or e.g. 10")
    if args.onset_weight != 1.0 and not args.chunk_prior:
        raise ConfigError("--onset-weight weighs the chunk prior's loss", "Add --chunk-prior or drop --onset-weight")
    if not args.goal_loss >= 0.0:
        raise ConfigError(f"--goal-loss must be >= 0, got {args.goal_loss}", "Pass 0 (off) or e.g. 1.0")
    if not (args.pointer_loss >= 0.0 and math.isfinite(args.pointer_loss)):
        raise ConfigError(f"--pointer-loss must be a finite number >= 0, got {args.pointer_loss}", "Pass 0 (off) or e.g. 1")
    if args.pointer_loss and not args.prior_readout:
        raise ConfigError("--pointer-loss trains the chunk prior's readout", "Add --chunk-prior --prior-readout 4 or drop --pointer-loss")
    if not (args.keypoint_loss >= 0.0 and math.isfinite(args.keypoint_loss)):
        raise ConfigError(f"--keypoint-loss must be a finite number >= 0, got {args.keypoint_loss}", "Pass 0 (off) or e.g. 1")
    if args.keypoint_loss and not args.prior_readout:
        raise ConfigError("--keypoint-loss trains the chunk prior's readout", "Add --chunk-prior --prior-readout 4 or drop --keypoint-loss")
    if args.readout_offsets and not args.prior_readout:
        raise ConfigError("--readout-offsets is a part of the chunk prior's readout",
                          "Add --chunk-prior --prior-readout 4 or drop --readout-offsets")
    if args.readout_track < 0:
        raise ConfigError(f"--readout-track must be >= 0 earlier frames, got {args.readout_track}", "Pass 0 (off) or e.g. 8")
    if args.readout_track and not args.prior_readout:
        raise ConfigError("--readout-track reads the places of the chunk prior's readout",
                          "Add --chunk-prior --prior-readout 4 or drop --readout-track")
    if args.keypoint_loss and args.augment_shift:
        raise ConfigError("--keypoint-loss's targets are pixel places, and --augment-shift moves the image under them",
                          "Drop one of them")
    for flag, used in (("--pointer-loss", args.pointer_loss), ("--binding-warmup", args.binding_warmup)):
        if used and args.camera == "hand_camera":
            raise ConfigError(f"{flag} projects the end point through a camera fixed to the world; the hand camera moves",
                              f"Train on --camera base_camera or drop {flag}")
    if args.binding_warmup and not (args.prior_readout and args.variant == "bank"):
        raise ConfigError("--binding-warmup trains the bank's perceptual stream and the chunk prior's readout",
                          "Train --variant bank with --chunk-prior --prior-readout 4, or drop --binding-warmup")
    if args.binding_warmup and args.resume:
        raise ConfigError("--binding-warmup runs before a run's first step; the checkpoint of a resumed run holds it already",
                          "Drop --binding-warmup when resuming")
    if args.augment_shift < 0 or args.state_noise < 0:
        raise ConfigError(f"--augment-shift and --state-noise must be >= 0, got {args.augment_shift} and {args.state_noise}",
                          "Pass --augment-shift 4 --state-noise 0.1, or 0 to switch one off")
    if args.image_crop is not None and (min(args.image_crop) < 0 or args.image_crop[2] < 1):
        raise ConfigError(f"--image-crop needs TOP, LEFT >= 0 and SIZE >= 1, got {' '.join(map(str, args.image_crop))}",
                          "Pass e.g. --image-crop 50 40 48 for 128 px images")
    if args.prior_readout < 0:
        raise ConfigError(f"--prior-readout must be >= 0, got {args.prior_readout}", "Pass 0 (off) or e.g. 4")
    if args.prior_readout and not args.chunk_prior:
        raise ConfigError("--prior-readout is a part of the chunk prior", "Add --chunk-prior or drop --prior-readout")
    if args.fine_position and args.perceptual_pool != "max":
        raise ConfigError("--fine-position needs --perceptual-pool max", "Add --perceptual-pool max or drop --fine-position")
    if not 0.0 <= args.augment_hue <= 0.5:
        raise ConfigError(f"--augment-hue must be in [0, 0.5] (a fraction of a full turn), got {args.augment_hue}",
                          "Pass 0 (off) or e.g. 0.5 (any hue)")
    if args.init_from is not None and args.resume:
        raise ConfigError("--init-from starts a new run from trained weights; --resume continues a run from its own checkpoint",
                          "Drop one of them")
    if args.init_from is not None and not (args.init_from / "mikasa.json").is_file():
        raise ConfigError(f"{str(args.init_from)!r} holds no policy written by vla-train (no mikasa.json)",
                          "Pass a vla-train output folder or its checkpoint/ folder")
    if args.resume and not (args.out / "checkpoint").is_dir():
        raise ConfigError(f"no checkpoint to resume in {str(args.out)!r}", "Drop --resume to start a new run")
    if args.resume:  # held before the minutes of loading: a second --resume into it is refused at once
        claim_output_dir(args.out, held, prepare=False)

    data = load_mikasa_demonstrations(args.demos, args.camera, args.max_episodes)  # bad / mismatched folders: here
    infos = [json.loads((folder / "meta" / "info.json").read_text()) for folder in args.demos]
    for folder, info in zip(args.demos, infos, strict=True):
        video_info = info.get("features", {}).get(f"observation.images.{args.camera}", {}).get("info", {})
        if video_info.get("video.g") != 1:  # written before demonstrations were stored intra-only
            print(f"warning: {folder}'s videos are inter-coded: the frames after a cue keep a decodable residue of it, "
                  "so a policy can learn the cue here without memory and then fail on the simulator's raw frames; "
                  "collect the demonstrations again with write_demonstrations (every frame a key frame)", file=sys.stderr)
    info = infos[0]
    meta = {"task": data.task_name, "variant": args.variant, "memory_length": args.memory_length,
            "bank_heads": args.bank_heads, "camera": args.camera, "perceptual_pool": args.perceptual_pool,
            "perceptual_grid": args.perceptual_grid, "perceptual_subgrid": args.perceptual_subgrid,
            "perceptual_fine_position": args.fine_position, "prior_readout_heads": args.prior_readout,
            "prior_readout_offsets": args.readout_offsets, "prior_readout_track": args.readout_track, "head_film": args.head_film, "chunk_prior": args.chunk_prior,
            "goal_loss_weight": args.goal_loss, "onset_loss_weight": args.onset_weight,
            "pointer_loss_weight": args.pointer_loss, "keypoint_loss_weight": args.keypoint_loss, "augment_hue": args.augment_hue,
            "image_crop": None if args.image_crop is None else list(check_crop(args.image_crop, data.images.shape[1:3])),
            "image_size": int(data.images.shape[1]), "camera_housing": bool(info.get("memstream", {}).get("camera_housing", True)),
            **ACTION_SPACE, "demos": str(args.demos[0]) if len(args.demos) == 1 else [str(d) for d in args.demos],
            "demo_seeds": demonstration_seeds(args.demos),
            "demonstrations": data.num_episodes}
    pointer_tokens = None
    if args.pointer_loss or args.binding_warmup:  # before the folder is claimed: no simulator for old folders is an error that writes nothing
        pointer_tokens = end_point_tokens(data, demonstration_camera(args.demos, args.camera), args.perceptual_grid,
                                          meta["image_crop"])
        if not (pointer_tokens >= 0).any():
            flag = "--pointer-loss" if args.pointer_loss else "--binding-warmup"
            raise ConfigError(f"no demonstration's end point falls inside the {args.camera} image, so {flag} "
                              "has nothing to train", "Check the camera parameters in the folders' meta/info.json, "
                              f"or drop {flag}")
        print(f"pointer targets: {int((pointer_tokens >= 0).sum())} of {len(pointer_tokens)} demonstrations end inside "
              f"the {args.camera} image", file=sys.stderr)
    keypoints = None
    if args.keypoint_loss:
        from memstream.embodied.envs.mikasa import resolve_task

        if resolve_task(data.task_name).kind != "intercept":
            raise ConfigError(f"--keypoint-loss points at the rolling ball of the Intercept tasks, and {data.task_name} has none",
                              "Drop --keypoint-loss")
        keypoints = pixels_to_grid(ball_pixels(data.images), int(data.images.shape[1]), args.perceptual_grid,
                                   meta["image_crop"])
        found = int(np.isfinite(keypoints).all(1).sum())
        if not found:
            raise ConfigError(f"the ball was found in none of the {len(keypoints)} demonstration frames, so --keypoint-loss "
                              "has nothing to train", "Check that the folders hold Intercept demonstrations, or drop --keypoint-loss")
        print(f"keypoint targets: the ball in {found} of {len(keypoints)} demonstration frames", file=sys.stderr)
    policy = mikasa_policy(data, args.variant, args.memory_length, seed=args.seed, camera=args.camera,
                           bank_heads=args.bank_heads,
                           loss_frames=args.loss_frames, inference_noise=args.inference_noise,
                           bank_gradients=args.bank_gradients, augment_shift=args.augment_shift,
                           augment_state_noise=args.state_noise, perceptual_pool=args.perceptual_pool,
                           perceptual_grid=args.perceptual_grid, perceptual_subgrid=args.perceptual_subgrid,
                           perceptual_fine_position=args.fine_position,
                           prior_readout_heads=args.prior_readout, prior_readout_offsets=args.readout_offsets,
                           prior_readout_track=args.readout_track,
                           head_film=args.head_film, chunk_prior=args.chunk_prior,
                           goal_loss_weight=args.goal_loss, pointer_loss_weight=args.pointer_loss,
                           keypoint_loss_weight=args.keypoint_loss, onset_loss_weight=args.onset_weight, augment_hue=args.augment_hue, n_action_steps=args.n_action_steps,
                           image_crop=None if meta["image_crop"] is None else tuple(meta["image_crop"]))
    if args.resume:  # a run that started from trained weights keeps saying so
        saved = json.loads((args.out / "checkpoint" / "mikasa.json").read_text())
        for key in ("init_from", "binding_warmup"):
            if key in saved:
                meta[key] = saved[key]
    if args.init_from is not None:
        trained = init_from_trained(policy, args.init_from, meta)
        meta["init_from"] = {"folder": str(args.init_from), "steps": trained.get("steps", trained.get("checkpoint_step"))}
    if not args.resume:  # after loading: a bad --demos or --init-from leaves an earlier run's folder as it was
        claim_output_dir(args.out, held, overwrite=args.overwrite)
    started = time.perf_counter()
    if args.binding_warmup:
        from memstream.embodied.policies.memvla.binding import binding_warmup

        meta["binding_warmup"] = binding_warmup(policy, data, pointer_tokens, args.binding_warmup, seed=args.seed, log=print)
        print(f"binding warm start: {args.binding_warmup} steps in {meta['binding_warmup']['seconds']:.0f} s, the readout's "
              f"first head on the end point's token in {meta['binding_warmup']['pointer_on_target']} of "
              f"{meta['binding_warmup']['scored_demonstrations']} demonstrations", file=sys.stderr)
    losses = train_with_checkpoints(policy, data, args.out, args.steps, meta, batch_episodes=args.batch_episodes,
                                    seed=args.seed, checkpoint_every=args.checkpoint_every, resume=args.resume,
                                    log=print, progress=False if args.no_progress else None, pointer_tokens=pointer_tokens,
                                    prefix_episodes=args.prefix_episodes, keypoints=keypoints)
    print(f"trained {args.variant} (L={args.memory_length}) on {data.num_episodes} {data.task_name} demonstrations "
          f"({len(data.images)} frames), final loss {losses[-1]:.4f} in {time.perf_counter() - started:.0f} s: {args.out}")
    return 0


@holds_output_dirs
def cmd_vla_eval(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    with _threads(args.threads):
        return _vla_eval(args, held)


def _vla_eval(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    if args.episodes < 1 or args.videos < 0:
        raise ConfigError(f"--episodes must be >= 1 and --videos >= 0, got {args.episodes} and {args.videos}",
                          "Pass --episodes 100 --videos 3")
    from memstream.embodied.envs.mikasa import EVAL_SEED, resolve_task
    from memstream.embodied.policies.memvla.mikasa import check_memory_wipe, evaluate_mikasa, load_mikasa_policy

    if args.task is not None:
        resolve_task(args.task)  # an unknown or refused task is named first
    policy, meta = load_mikasa_policy(args.policy, args.task)
    if args.inference_noise is not None:
        if not 0.0 <= args.inference_noise <= 1.0:
            raise ConfigError(f"--inference-noise must be in [0, 1], got {args.inference_noise}", "Pass 0 or 1")
        policy.config.inference_noise = float(args.inference_noise)
    if args.n_action_steps is not None:
        if not 1 <= args.n_action_steps <= policy.config.chunk_size:
            raise ConfigError(f"--n-action-steps must be in 1..{policy.config.chunk_size} (the policy's chunk size), "
                              f"got {args.n_action_steps}", f"Pass 1 .. {policy.config.chunk_size}")
        policy.config.n_action_steps = int(args.n_action_steps)
    if args.temporal_ensemble is not None:
        if not math.isfinite(args.temporal_ensemble):
            raise ConfigError(f"--temporal-ensemble must be a finite number, got {args.temporal_ensemble}",
                              "Pass e.g. 0.01 (ACT's default)")
        policy.config.temporal_ensemble_coeff = float(args.temporal_ensemble)
    if policy.config.temporal_ensemble_coeff is not None and policy.config.n_action_steps != 1:
        raise ConfigError(f"temporal ensembling (--temporal-ensemble) predicts a chunk every step, but the policy "
                          f"executes {policy.config.n_action_steps} actions of each", "Pass --n-action-steps 1")
    if args.wipe_memory:
        check_memory_wipe(policy, meta)
    seed = EVAL_SEED if args.seed is None else args.seed
    low, high = meta.get("demo_seeds") or (0, 0)
    if seed <= high and low < seed + args.episodes:
        raise ConfigError(f"evaluation seeds {seed}..{seed + args.episodes - 1} overlap the policy's demonstrations' "
                          f"{low}..{high}", "Drop --seed (the suite's benchmark seeds 4242424242..) or pick others")
    claim_output_dir(args.out, held, overwrite=args.overwrite)
    task = resolve_task(meta["task"])
    path = Path(args.out) / "results.json"
    rows: list[dict[str, Any]] = []
    head = {"task": task.name, "policy": str(args.policy), "variant": meta.get("variant"),
            "memory_length": meta.get("memory_length"), "seed": seed, "episodes_requested": args.episodes,
            "inference_noise": policy.config.inference_noise, "n_action_steps": policy.config.n_action_steps,
            "temporal_ensemble_coeff": policy.config.temporal_ensemble_coeff, "wipe_memory": args.wipe_memory,
            "chance_success_rate": task.chance_success_rate, "trained": {k: meta.get(k) for k in ("steps", "checkpoint_step", "demonstrations")},
            "protocol_note": "MemoryVLA's protocol: 250 demonstrations per task, 100 evaluation episodes"}

    def on_episode(row: dict[str, Any]) -> None:
        rows.append(row)
        _write_json(path, {**head, "complete": False, **_summary(rows), "episodes": rows})
        if not args.no_progress:
            print(f"{task.name} {row['episode'] + 1}/{args.episodes} seed {row['seed']} "
                  f"{'success' if row['success'] else 'failure'} in {row['length']} steps", flush=True)

    evaluate_mikasa(policy, meta, args.episodes, seed, videos=args.videos, video_dir=Path(args.out) / "videos",
                    on_episode=on_episode, wipe_memory=args.wipe_memory)
    _write_json(path, {**head, "complete": True, **_summary(rows), "episodes": rows})
    summary = _summary(rows)
    print(f"{task.name} {meta.get('variant')}{' (bank wiped at the cue end)' if args.wipe_memory else ''} "
          f"L={meta.get('memory_length')}: success {summary['success_rate']:.2f} "
          f"over {len(rows)} episodes (chance {_rate(task.chance_success_rate)}); results: {path}")
    return 0


def _rate(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"episodes_done": len(rows), "success_rate": sum(r["success"] for r in rows) / max(len(rows), 1)}


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads for one command, given back afterwards (a command run in-process, from
    ``memstream.streaming.cli.main`` in a notebook or a test, must not leave its setting behind)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}", "Pass --threads 1")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(path, data, indent=1)
