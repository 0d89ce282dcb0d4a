"""The ``memstream`` command: argument parsing and the one error boundary.

Every :class:`MemstreamError` becomes ``error: <what>. <fix>`` on stderr and its exit code (2 for
bad input, 1 for a failing stage); ``--debug`` re-raises with the full traceback. Ctrl-C exits 130
after the run's summary is written; SIGTERM stops the pipeline commands (:data:`PIPELINE_COMMANDS`)
the same way and exits 143.

Every command that writes a run folder takes ``--out`` and ``--overwrite`` (:func:`add_output_args`)
and checks the folder with :func:`memstream.streaming.paths.prepare_output_dir` before any work.

This module and the ``memstream.commands`` modules import nothing heavy at module level (torch,
OpenCV, transformers, open3d, rich...): ``memstream --help`` and argument errors start in well
under a second; the handlers import what they need.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from memstream.streaming.errors import MemstreamError
from memstream.streaming.paths import check_output_dir, prepare_output_dir
from memstream.streaming.registry import entry_points_of

# Packages built on streaming add subcommands here: each entry point is a function that takes the
# subparsers object, adds its parser(s) and sets ``handler=fn(args) -> exit code`` as a default.
COMMANDS_GROUP = "memstream.commands"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memstream", description="Streaming perception memories for video and embodied agents.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the configured stages over a source")
    run.add_argument("source", help="video file, image folder, TUM RGB-D folder, cam:N, rtsp://..., synthetic://PRESET")
    run.add_argument("--config", default=None, help="YAML file or preset name (default: default)")
    add_output_args(run, required=False, help="output folder (default: runs/<time>)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    run.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    _add_batch_parser(sub)

    sub.add_parser("info", help="versions, devices and optional extras").add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS
    )

    synth = sub.add_parser("synth", help="write a synthetic scene with ground truth to disk")
    synth.add_argument("scene", help="preset name or synthetic:// URI, e.g. 'distractors?seed=3&frames=300'")
    add_output_args(synth)
    synth.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    for entry in entry_points_of(COMMANDS_GROUP):  # e.g. tracking's `track` and `eval-track`
        entry.load()(sub)
    return parser


def _add_batch_parser(sub: argparse._SubParsersAction) -> None:
    batch = sub.add_parser("batch", help="run the configured stages over many videos (locally or on Ray), resumable")
    batch.add_argument("inputs", help="a folder of videos, or a manifest: .jsonl ({\"path\", \"id\"} lines), .csv (path[,id]), .txt")
    batch.add_argument("--config", default=None, help="YAML file or preset name (default: default)")
    batch.add_argument("--out", type=Path, required=True, help="batch folder: OUT/<id>/ per video, OUT/batch.jsonl; "
                       "run again to resume")
    batch.add_argument("--overwrite", action="store_true", help="start over: replace an earlier batch in --out")
    batch.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    batch.add_argument("--max-frames", type=int, default=None, help="stop each video after N frames")
    batch.add_argument("--workers", type=int, default=None, help="videos at a time (default: half the CPUs; on Ray: the cluster's CPUs)")
    batch.add_argument("--retries", type=int, default=2, help="runs of a video after its process dies (default: 2)")
    batch.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                       help='run on a Ray cluster through Ray Data: auto (the running one) or HOST:PORT (pip install "memstream[ray]")')
    batch.add_argument("--gpus-per-video", type=float, default=0.0, help="with --ray: GPUs each video's task reserves (default: 1 CPU)")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def add_output_args(parser: argparse.ArgumentParser, *, required: bool = True, help: str = "output folder") -> None:
    """``--out`` and ``--overwrite``, the same for every command that writes a folder."""
    parser.add_argument("--out", type=Path, required=required, default=None, help=help)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier run in --out (default: refuse a folder that holds files)")


#: Commands that stop on Ctrl-C with finished outputs and a summary (``run_pipeline`` or a batch of
#: it); SIGTERM is turned into Ctrl-C for them.
PIPELINE_COMMANDS = frozenset({"run", "batch", "track", "reconstruct"})


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the commands load: nothing started, no traceback
        print("interrupted", file=sys.stderr)
        return 130
    received: list[int] = []
    try:
        handler = getattr(args, "handler", None) or {"run": _cmd_run, "batch": _cmd_batch, "info": _cmd_info, "synth": _cmd_synth}[args.command]
        with _sigterm_interrupts(received, args.command in PIPELINE_COMMANDS):
            code = handler(args)
        return 128 + received[0] if received and code == 130 else code
    except MemstreamError as exc:
        if args.debug:
            raise
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted" + (" by SIGTERM" if received else ""), file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)


@contextlib.contextmanager
def _sigterm_interrupts(received: list[int], enabled: bool) -> Iterator[None]:
    """SIGTERM (``kill PID``, ``timeout``, a job scheduler, ``docker stop``) stops a pipeline command
    as Ctrl-C does: the frames queued finish, every output is closed, the summary written, a batch's
    running videos are left for the next run; the exit status is then 143. By default SIGTERM ended
    the process mid-write: videos without their index, no ``summary.json``. The signal is appended
    to ``received``; the previous handler comes back afterwards."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cmd_run(args: argparse.Namespace) -> int:
    from memstream.streaming.config import load_config
    from memstream.streaming.pipeline.run import run_pipeline
    from memstream.streaming.threads import apply_thread_budget

    apply_thread_budget()  # MEMSTREAM_THREADS (set by memstream batch for each video's process)
    overrides = list(args.overrides)
    if args.max_frames is not None:
        overrides.append(f"source.max_frames={args.max_frames}")
    config = load_config(args.config, overrides)
    out = prepare_output_dir(args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"), overwrite=args.overwrite)
    summary = run_pipeline(args.source, config, out, progress=not args.no_progress)  # holds out while it writes
    print_summary(summary, out)
    return 130 if summary["stop_reason"] == "interrupted" else 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from memstream.streaming.batch.run import BatchConfig, run_batch
    from memstream.streaming.config import load_config
    from memstream.streaming.errors import ConfigError

    try:
        batch = BatchConfig(workers=args.workers, retries=args.retries, ray=args.ray, gpus_per_video=args.gpus_per_video)
    except ValueError as exc:
        raise ConfigError(f"bad batch option: {exc}", "--workers takes 1 or more, --retries 0 or more, "
                          "--gpus-per-video 0 or more with --ray") from None
    overrides = list(args.overrides)
    if args.max_frames is not None:
        overrides.append(f"source.max_frames={args.max_frames}")
    config = load_config(args.config, overrides)
    summary = run_batch(args.inputs, config, args.out, batch, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{summary['videos']} videos: {summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped "
          f"({summary['ran']} run now in {summary['wall_s']:.1f} s, {summary['backend']}, {summary['workers'] or 'all'} workers)")
    print(f"wrote {summary['results']}")
    return 1 if summary["failed"] else 0


def print_summary(summary: dict, out: Path) -> None:
    """The run's table (frames, fps, per-stage latency), where the summary was written, and the file
    to open to see each stage's work (a stage's ``preview`` output, e.g. ``tracking.mp4``)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['frames_processed']} frames, {summary['fps']} fps, {summary['wall_s']:.2f} s")
    for column in ("stage", "frames", "mean ms", "p95 ms", "fps"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    rows = {"decode": summary["decode"], **summary["stages"]}
    for name, stats in rows.items():
        table.add_row(name, str(stats["frames"]), f"{stats['mean_ms']:.2f}", f"{stats['p95_ms']:.2f}", str(stats["throughput_fps"]))
    console = Console()
    console.print(table)
    if summary["frames_dropped"]:
        console.print(f"dropped {summary['frames_dropped']} frames (backpressure {summary['backpressure']})")
    console.print(f"wrote {out / 'summary.json'}")
    for name, stats in summary["stages"].items():
        preview = stats.get("outputs", {}).get("preview")
        if preview:
            console.print(f"open {out / preview} to see the {name} stage's work", soft_wrap=True)


def _cmd_info(args: argparse.Namespace) -> int:
    from memstream.streaming.info import collect_info, print_info

    print_info(collect_info())
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from memstream.streaming.synthetic import write_scene

    check_output_dir(args.out, overwrite=args.overwrite)  # the rule of every command: see streaming.paths
    out = write_scene(args.scene, args.out, overwrite=args.overwrite)
    files = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"wrote {files} files to {out} (video.mp4, gt/, masks/, rgb/, depth/, groundtruth.txt, scene.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
