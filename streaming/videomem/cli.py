"""``memstream ask``: watch a source once, answer questions about everything seen so far.

    memstream ask video.mp4 "What did the person pick up?" --model llava-hf/llava-onevision-qwen2-0.5b-ov-hf
    memstream ask video.mp4 "What happened first?" --at 90          # as of 90 s into the stream
    memstream ask cam:0 --interactive --model ...                    # keep watching, questions from stdin

The answer streams to stdout as it is generated; a line on stderr says which stream time it covers
and which frames it was built from. ``--json`` prints one JSON object per answer instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path

from memstream.streaming.errors import ConfigError, MemstreamError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Entry point of the ``memstream.commands`` group."""
    ask = sub.add_parser("ask", help="answer questions about a video or live stream (ReKV video KV memory)")
    ask.add_argument("source", help="video file, image folder, cam:N, rtsp://..., synthetic://PRESET")
    ask.add_argument("question", nargs="?", default=None, help="the question (omit with --interactive)")
    ask.add_argument("--at", type=float, default=None, metavar="SECONDS",
                     help="answer as of this stream time (default: after the whole source)")
    ask.add_argument("--model", default=None, help="Video-LLM: local directory or hub id; tiny-random for a weight-free smoke test")
    ask.add_argument("--memory", default="rekv", help="a registered video memory: rekv (KV of every frame, "
                     "retrieved per question; default) or flash_vstream (fixed-size clustered memory)")
    ask.add_argument("--interactive", action="store_true", help="keep ingesting; read questions from stdin, one per line")
    ask.add_argument("--store", default=None, metavar="DIR", help="disk tier of the KV store; a later run with the same DIR resumes")
    ask.add_argument("--sample-fps", type=float, default=1.0, help="frames per second given to the memory (default 1)")
    ask.add_argument("--window-frames", type=int, default=None, help="sliding window while encoding, frames")
    ask.add_argument("--topk", type=int, default=None, help="frames retrieved per layer")
    ask.add_argument("--retrieval", default=None, help="a registered retrieval policy: internal (ReKV's per-layer "
                     "question queries; default), external (an image-text model, --embedder), recent, uniform, random, all")
    ask.add_argument("--embedder", default=None, metavar="MODEL", help="CLIP / SigLIP path or hub id for --retrieval external")
    ask.add_argument("--codec", choices=["none", "int8-channel", "int8-token"], default=None, help="KV block storage")
    ask.add_argument("--max-new-tokens", type=int, default=128)
    ask.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ask.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    ask.add_argument("--max-frames", type=int, default=None, help="stop reading the source after N frames")
    ask.add_argument("--scene", default=None, metavar="RUN_DIR",
                     help="ground each question on the scene memory of a run over the same video (memstream run "
                          "SOURCE --config scene --out RUN_DIR): its objects' positions and times go before the question")
    ask.add_argument("--json", action="store_true", help="print each answer as one JSON object")
    ask.add_argument("--progress", dest="progress", action="store_const", const="always", default="auto",
                     help="report frames read on stderr (default: only when stderr is a terminal)")
    ask.add_argument("--no-progress", dest="progress", action="store_const", const="never", help="no progress line")
    ask.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    ask.set_defaults(handler=cmd_ask)

    check = sub.add_parser("check-store", help="check a KV block store (ask --store) or a serve --store without changing it")
    check.add_argument("directory", help="a block store directory, or the --store directory of memstream serve")
    check.add_argument("--json", action="store_true", help="one JSON object per store")
    check.set_defaults(handler=cmd_check_store)

    serve = sub.add_parser("serve", help="streaming video QA service: frames over HTTP/WebSocket, OpenAI-style answers")
    serve.add_argument("--model", default=None, help="Video-LLM: local directory or hub id (tiny-random for a smoke test)")
    serve.add_argument("--memory", default="rekv", help="a registered video memory: rekv or flash_vstream")
    serve.add_argument("--window-frames", type=int, default=None)
    serve.add_argument("--topk", type=int, default=None)
    serve.add_argument("--codec", choices=["none", "int8-channel", "int8-token"], default=None)
    serve.add_argument("--max-streams", type=int, default=16, help="streams served at once")
    serve.add_argument("--device", default="auto")
    serve.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    serve.add_argument("--max-new-tokens", type=int, default=128, help="default answer length")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; beyond loopback only with an API key")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", action="append", default=[], metavar="KEY",
                       help="accepted 'Authorization: Bearer KEY' (repeatable; also $MEMSTREAM_API_KEY)")
    serve.add_argument("--api-keys-file", default=None, metavar="FILE", help="more keys, one per line")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a Host name clients use besides loopback ones (repeatable; * for any)")
    serve.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                       help="a browser origin (scheme://host:port) allowed besides loopback ones (repeatable)")
    serve.add_argument("--docs", action="store_true", help="serve /docs, /redoc and /openapi.json (behind the key)")
    serve.add_argument("--max-body-bytes", type=int, default=8 << 20, help="largest request body or frame message")
    serve.add_argument("--max-frame-pixels", type=int, default=3840 * 2160, help="largest frame, width x height")
    serve.add_argument("--max-question-chars", type=int, default=8000, help="longest question, characters")
    serve.add_argument("--max-tokens-cap", type=int, default=1024, help="the most max_tokens a request may ask for")
    serve.add_argument("--max-frames-per-s", type=float, default=60.0, help="frames one stream may send per second (429 past it)")
    serve.add_argument("--max-concurrent-answers", type=int, default=4, help="answers generated at once (429 past it)")
    serve.add_argument("--idle-timeout-s", type=float, default=3600.0,
                       help="close and delete a stream idle this long (no frame, no question); 0 keeps streams forever")
    serve.add_argument("--answer-timeout-s", type=float, default=300.0,
                       help="stop an answer still generating after this long (504); 0 for no deadline")
    serve.add_argument("--header-timeout-s", type=float, default=10.0,
                       help="close a connection whose request head is not complete this long after it opened or after its last response")
    serve.add_argument("--body-timeout-s", type=float, default=60.0, help="refuse (408) a request body not in this long after its head")
    serve.add_argument("--max-connections", type=int, default=1024, help="connections or requests at once; past it, 503")
    serve.add_argument("--max-connections-per-client", type=int, default=64,
                       help="connections at once from one client address; past it, 429 and closed")
    serve.add_argument("--max-head-bytes", type=int, default=64 << 10,
                       help="bytes of one request head (request line and headers); past it, 431 and closed")
    serve.add_argument("--max-streams-per-key", type=int, default=None, help="streams one API key may hold (default: no bound but --max-streams)")
    serve.add_argument("--store", default=None, metavar="DIR",
                       help="keep every stream's memory in DIR: streams survive a restart (rekv only)")
    serve.add_argument("--max-blocks", type=int, default=None,
                       help=f"frames a stream's memory keeps, oldest deleted first (rekv; default {SERVE_MAX_BLOCKS}; 0 keeps all)")
    serve.add_argument("--ram-budget-mb", type=float, default=None,
                       help="a stream's RAM tier with --store; older frames stay on disk only (default: no bound)")
    serve.add_argument("--scene", action="append", default=None, metavar="[NAME=]RUN_DIR",
                       help="a run's scene memory (memstream run ... --config scene --out RUN_DIR, running or done), "
                            "by name (a bare RUN_DIR is 'default'; repeat for several): its queries as tools at "
                            "/v1/tools, and the facts of each answer on a stream bound to it (POST /v1/streams "
                            '{"scene": NAME}; a server with one scene binds every stream to it)')
    serve.add_argument("--ray", type=int, default=None, metavar="N",
                       help="serve on Ray Serve with N replicas, each holding some streams (needs --store on storage "
                            "every replica reaches; the ray extra)")
    serve.add_argument("--ray-address", default=None, metavar="ADDRESS",
                       help="the Ray cluster to join (auto, ray://host:10001, ...); default: start a local one")
    serve.add_argument("--ray-ingress", choices=("process", "serve"), default="process",
                       help="with --ray: who serves HTTP: this process, calling the replicas through Ray Serve handles "
                            "(default, one hop less), or Ray Serve's proxy and a frontend deployment (proxies on every node)")
    serve.add_argument("--ray-transport", choices=("grpc", "actor"), default="grpc",
                       help="with --ray: how requests reach the replicas: Serve's gRPC between "
                            "deployments (default; needs the replicas' ports reachable from this host) or Ray actor "
                            "calls through the object store (Ray's own ports only)")
    serve.add_argument("--ray-user-code-thread", action="store_true",
                       help="with --ray: run the replicas' request handlers on Serve's separate user-code event loop "
                            "(Serve's default; one more thread hop a request) instead of the replica's main loop")
    serve.add_argument("--streams-per-replica", type=int, default=8, help="with --ray: streams one replica holds at once")
    serve.add_argument("--replica-cpus", type=float, default=1.0, help="with --ray: CPUs reserved per replica")
    serve.add_argument("--replica-gpus", type=float, default=0.0, help="with --ray: GPUs reserved per replica")
    serve.add_argument("--replica-niceness", type=int, default=0, metavar="N",
                       help="with --ray: the nice value of the replicas' processes (default 0: the request path keeps "
                            "the node's priority; Ray's own default for workers is 15, behind everything else on the node)")
    serve.add_argument("--torch-threads", type=int, default=None, metavar="N",
                       help="torch's intra-op threads per pass (default: torch's own). On a CPU, 1 keeps "
                            "concurrent streams and answers from oversubscribing the cores")
    serve.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve, retrieval=None, embedder=None, sample_fps=None)


def _options(args: argparse.Namespace):
    from memstream.streaming.configtypes import parse
    from memstream.streaming.videomem.options import VideoMemoryOptions

    if not args.model:
        raise ConfigError(
            "no --model given",
            "Give a Video-LLM directory or hub id (e.g. --model llava-hf/llava-onevision-qwen2-0.5b-ov-hf), or --model tiny-random for a smoke test",
        )
    given = {"window_frames": args.window_frames, "topk": args.topk, "codec": args.codec, "store_dir": args.store,
             "retrieval": args.retrieval, "external_embedder": args.embedder}
    rekv = {k: v for k, v in given.items() if v is not None}
    if rekv and args.memory != "rekv":
        names = {"store_dir": "store", "external_embedder": "embedder"}
        flags = ", ".join("--" + names.get(k, k).replace("_", "-") for k in rekv)
        raise ConfigError(f"{flags} only apply to --memory rekv", "Drop them or use --memory rekv")
    data = {"model": args.model, "device": args.device, "dtype": args.dtype, "memory": args.memory,
            "sample_fps": args.sample_fps, "rekv": rekv, "generation": {"max_new_tokens": args.max_new_tokens}}
    try:
        return parse(VideoMemoryOptions, data, "")
    except ConfigError as exc:  # the same checks as YAML; the fix names the flags
        raise ConfigError(exc.what, f"See memstream {args.command} --help") from None


def _print_answer(answer, as_json: bool, asked_at_s: float | None = None, question: str | None = None,
                  facts: list[str] | None = None) -> None:
    from memstream.streaming.videomem.stage import answer_record

    if as_json:
        record = answer_record(answer, asked_at_s)
        if facts is not None:  # the question as asked, and what it was grounded on
            record.update(question=question, facts=facts)
        print(json.dumps(record), flush=True)
        return
    print(flush=True)
    if facts:
        print("[grounded on: " + "; ".join(facts) + "]", file=sys.stderr, flush=True)
    frames = answer.retrieval.frames()
    shown = ", ".join(map(str, frames[:12])) + (", ..." if len(frames) > 12 else "")
    print(
        f"[as of {answer.covered_until_s:.1f} s, {answer.frames_seen} frames; {answer.retrieval.method} retrieval "
        f"of frames {shown}; first token {answer.time_to_first_token_s:.2f} s]",
        file=sys.stderr,
        flush=True,
    )


def _ask(memory, question: str, options, as_json: bool, asked_at_s: float | None = None, grounding=None):
    """Answer ``question``; with ``grounding`` (``(provider, source)``), on the facts it gives too."""
    from memstream.streaming.videomem.grounding import grounded_question

    facts = None if grounding is None else grounding[0](grounding[1], question, asked_at_s)
    on_text = None if as_json else (lambda piece: print(piece, end="", flush=True))
    answer = memory.ask(grounded_question(question, facts or []), options.generation, on_text=on_text)
    _print_answer(answer, as_json, asked_at_s, question, facts)
    return answer


def cmd_ask(args: argparse.Namespace) -> int:
    from memstream.streaming.videomem.model_paths import check_model_paths

    if args.interactive == (args.question is not None):
        raise ConfigError("give either a question or --interactive", 'e.g. memstream ask video.mp4 "What happened?" --model ...')
    if args.question is not None and not args.question.strip():
        raise ConfigError("the question is empty", "Ask a question in words")
    # The flags a user mistypes are checked before torch and transformers load (seconds).
    check_model_paths(args.model, args.embedder if args.retrieval == "external" else None)
    grounding = None
    if args.scene is not None:
        from memstream.streaming.videomem.grounding import grounding_provider

        grounding = (grounding_provider("scene"), args.scene)
        grounding[0](args.scene, "", None)  # a missing or unreadable run folder fails now, not after the video
    from memstream.streaming.sources import open_source  # numpy, OpenCV

    source = open_source(args.source, max_frames=args.max_frames)
    try:
        from memstream.streaming.videomem.factory import build_memory

        options = _options(args)
        memory = build_memory(options)
    except BaseException:
        source.close()
        raise
    try:
        if args.interactive:
            return _interactive(source, memory, options, args.json, grounding)
        ended_at_s = _ingest(source, memory, options, args)
        answer = _ask(memory, args.question, options, args.json, args.at, grounding)
        if ended_at_s is not None:  # --at lies past the end of the stream: never a silent "as of"
            print(f"note: the stream ended at {ended_at_s:.2f} s, before --at {args.at:g} s; the answer covers it up to "
                  f"{answer.covered_until_s:.2f} s (the last frame given to the memory)", file=sys.stderr, flush=True)
        return 0
    finally:
        memory.close()


def _ingest(source, memory, options, args: argparse.Namespace) -> float | None:
    """Feed the source to the memory up to ``--at``; returns the last frame's time when the source
    ended before ``--at`` (None when ``--at`` was reached, or not given). Progress: the shared bar
    (:mod:`memstream.streaming.progress`), with the frames kept for the memory and the stream time."""
    from memstream.streaming.progress import progress
    from memstream.streaming.videomem.stage import frame_schedule

    schedule = frame_schedule(options.sample_fps)
    show = {"always": True, "never": False}.get(args.progress)
    last_s, kept = None, 0
    with source, progress("memstream ask", source.info.num_frames, show=show, transient=False) as bar:
        for frame in source:
            if args.at is not None and frame.timestamp_s > args.at:
                return None
            if schedule.keep(frame.timestamp_s):
                memory.update(frame)
                kept += 1
            bar.advance()
            bar.status(f"{kept} kept for the memory, stream at {frame.timestamp_s:.1f} s")
            last_s = frame.timestamp_s
    return last_s if args.at is not None and last_s is not None and last_s < args.at else None


def cmd_check_store(args: argparse.Namespace) -> int:
    """Check every block store under ``directory`` (one, or each stream's of a serve store): exit 0
    when all are whole, 2 with the first problem otherwise."""
    from pathlib import Path

    from memstream.streaming.videomem.store import StoreError, check_store

    root = Path(args.directory)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory", "Give the directory passed to --store")
    served = (root / "service.json").is_file()
    stores = sorted((root / "streams").glob("*/kv")) if served else [root]
    for path in stores:
        name = path.parent.name if served else str(path)
        if served and not (path / "store.json").exists():  # a stream that has no frame yet
            found = {"store": name, "blocks": 0, "frames": None, "seconds": None, "torn_tail": False, "bytes": 0}
        else:
            try:
                found = {"store": name, **vars(check_store(path))}
            except StoreError as exc:
                raise StoreError(f"{'stream ' + repr(name) + ': ' if served else ''}{exc.what}", exc.fix) from exc
        if args.json:
            print(json.dumps(found))
        else:
            span = "" if found["frames"] is None else f", frames {found['frames'][0]}-{found['frames'][1]}"
            torn = "; an interrupted last write will be dropped on open" if found["torn_tail"] else ""
            print(f"{name}: ok, {found['blocks']} blocks{span}, {found['bytes'] / 2**20:.1f} MiB{torn}")
    if served and not stores:
        print(f"{root}: ok, no streams")
    return 0


#: Frames a served ReKV stream keeps unless --max-blocks says otherwise: bounded by default, as a
#: server of endless streams must be (LLaVA-OneVision-0.5B: about 2.3 MiB of KV a frame, so ~2.3 GiB).
SERVE_MAX_BLOCKS = 1024

#: How long a question asked before the first frame waits for one before it is refused.
FIRST_FRAME_WAIT_S = 30.0


def cmd_serve(args: argparse.Namespace) -> int:
    from memstream.streaming.videomem.model_paths import check_model_paths
    from memstream.streaming.videomem.service import AccessPolicy, ServiceLimits, check_bind, load_api_keys
    from memstream.streaming.videomem.service.persist import StreamSettings, StreamStore

    keys = load_api_keys(args.api_key, args.api_keys_file)
    hosts = [*args.allowed_host, *([] if args.host in ("0.0.0.0", "::", "") else [args.host])]  # the bound name itself
    access = AccessPolicy(api_keys=keys, allowed_hosts=tuple(hosts), allowed_origins=tuple(args.allowed_origin))
    check_bind(args.host, access)  # before the model loads
    rekv = args.memory == "rekv"
    if not rekv and (args.max_blocks is not None or args.ram_budget_mb is not None):
        raise ConfigError("--max-blocks and --ram-budget-mb only apply to --memory rekv (flash_vstream's memory has a fixed size)",
                          "Drop them or use --memory rekv")
    if args.ram_budget_mb is not None and args.store is None:
        raise ConfigError("--ram-budget-mb needs --store: without a disk tier there is nowhere to keep older frames",
                          "Add --store DIR, or bound the streams with --max-blocks")
    max_blocks = (SERVE_MAX_BLOCKS if args.max_blocks is None else args.max_blocks or None) if rekv else None
    try:
        limits = ServiceLimits(
            max_body_bytes=args.max_body_bytes, max_frame_pixels=args.max_frame_pixels,
            max_question_chars=args.max_question_chars, max_tokens_cap=args.max_tokens_cap,
            max_frames_per_s=args.max_frames_per_s, max_concurrent_answers=args.max_concurrent_answers,
            idle_timeout_s=args.idle_timeout_s or None, answer_timeout_s=args.answer_timeout_s or None,
            max_streams_per_key=args.max_streams_per_key, stream_max_blocks=max_blocks,
            stream_ram_budget_mb=args.ram_budget_mb, header_timeout_s=args.header_timeout_s,
            body_timeout_s=args.body_timeout_s, max_connections=args.max_connections,
            max_connections_per_client=args.max_connections_per_client, max_head_bytes=args.max_head_bytes)
    except ValueError as exc:
        raise ConfigError(str(exc), "Give a positive number") from None
    # A backstop under the header check: OpenCV's own decode limit (read once, at its first decode).
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(limits.max_frame_pixels)
    check_model_paths(args.model, args.embedder if args.retrieval == "external" else None)  # before torch loads
    from memstream.streaming.videomem.factory import load_model, memory_for
    from memstream.streaming.videomem.serve import VideoQAService, create_app

    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("memstream serve needs uvicorn", 'Install it with: pip install "memstream[serve]"') from exc
    from memstream.streaming.videomem.service.connections import uvicorn_options
    scenes = None
    if args.scene:  # before the model loads: a missing run folder or a name given twice fails at once
        from memstream.streaming.videomem.grounding import grounding_provider
        from memstream.streaming.videomem.service.scenes import SceneSet, parse_scene_flags

        scenes = SceneSet.from_folders(parse_scene_flags(args.scene), grounding_provider("scene", "memstream.tools"))
    options = _options(args)
    if args.torch_threads is not None and args.torch_threads < 1:
        raise ConfigError(f"--torch-threads {args.torch_threads} is not a positive number", "Give 1 or more")
    if args.ray is not None:
        if scenes is not None:
            raise ConfigError("--scene is not served with --ray yet", "Serve the scene's tools from a plain memstream serve")
        return _serve_on_ray(args, options, access, limits, rekv)
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    llm = load_model(options)  # one model, one memory per stream
    store = None if args.store is None else StreamStore(args.store, options.model, llm.spec.fingerprint)

    def make_memory(settings: StreamSettings):  # --store DIR is the root; each stream's KV has a folder in it
        per_stream = replace(options, rekv=settings.rekv(options.rekv)) if rekv else options
        return memory_for(llm, per_stream)

    service = VideoQAService(make_memory, model_name=options.model, max_streams=args.max_streams,
                             default_max_tokens=min(args.max_new_tokens, limits.max_tokens_cap), limits=limits, store=store,
                             scenes=scenes)
    if service.sessions:
        print(f"[{len(service.sessions)} stream(s) reopened from {args.store}]", file=sys.stderr, flush=True)
    auth = f"{len(keys)} API key(s)" if keys else "no API key, loopback only"
    print(f"[serving {options.model} ({options.memory}) on http://{args.host}:{args.port}/v1; {auth}]", file=sys.stderr, flush=True)
    uvicorn.run(create_app(service, access, docs=args.docs), host=args.host, port=args.port, log_level="warning",
                **uvicorn_options(limits))
    return 0


def _serve_on_ray(args: argparse.Namespace, options, access, limits, rekv: bool) -> int:
    """``memstream serve --ray N``: the same API from Ray Serve replicas sharing ``--store``."""
    from memstream.streaming.videomem.service.persist import StreamStore
    from memstream.streaming.videomem.service.ray_serve import RayServeSpec, build_app, connect_ray, deploy, serve_in_process

    if args.ray < 1:
        raise ConfigError(f"--ray {args.ray} is not a number of replicas", "Give 1 or more")
    if not 0 <= args.replica_niceness <= 19:
        raise ConfigError(f"--replica-niceness {args.replica_niceness} is not a nice value a worker may take",
                          "Give 0 (the default) to 19 (lowest priority; Ray's own default is 15)")
    if args.store is None or not rekv:
        raise ConfigError("--ray needs --store DIR (and --memory rekv): replicas reopen streams from a store they all reach",
                          "Add --store on a filesystem every Ray node mounts at the same path")
    spec = RayServeSpec(
        options=options, store=str(Path(args.store).resolve()), replicas=args.ray,
        streams_per_replica=args.streams_per_replica, max_streams=args.max_streams, limits=limits,
        default_max_tokens=min(args.max_new_tokens, limits.max_tokens_cap), replica_cpus=args.replica_cpus,
        replica_gpus=args.replica_gpus, niceness=args.replica_niceness, torch_threads=args.torch_threads,
        store_id=StreamStore.identify(Path(args.store).resolve()),  # each replica checks it reaches this store
        transport=args.ray_transport, user_code_thread=args.ray_user_code_thread,
    )
    auth = f"{len(access.api_keys)} API key(s)" if access.api_keys else "no API key, loopback only"
    banner = (f"[serving {options.model} on Ray Serve, {args.ray} replica(s), at http://{args.host}:{args.port}/v1 "
              f"({'this process' if args.ray_ingress == 'process' else 'Serve proxy'}); {auth}]")
    if args.ray_ingress == "process":
        connect_ray(args.ray_address)  # fails fast on a bad address, before the banner
        print(banner, file=sys.stderr, flush=True)
        serve_in_process(spec, access, args.host, args.port, docs=args.docs)
        return 0
    connect_ray(args.ray_address, args.host, args.port)
    print(banner, file=sys.stderr, flush=True)
    deploy(build_app(spec, access, docs=args.docs), spec.app_name, route_prefix="/", blocking=True)
    return 0


def _interactive(source, memory, options, as_json: bool, grounding=None) -> int:
    """Ingest in a background thread; answer each stdin line on what has been seen so far."""
    from memstream.streaming.videomem.stage import frame_schedule

    schedule = frame_schedule(options.sample_fps)
    failure: list[BaseException] = []
    stop = threading.Event()
    started = threading.Event()  # set at the first stored frame, or when the source ends

    def ingest() -> None:
        try:
            with source:
                for frame in source:
                    if stop.is_set():
                        return
                    if schedule.keep(frame.timestamp_s):
                        memory.update(frame)
                        started.set()
            print(f"[source ended after {memory.frames_seen} frames; still answering]", file=sys.stderr, flush=True)
        except BaseException as exc:  # re-raised in the main thread below
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=ingest, name="memstream-ingest", daemon=True)
    thread.start()
    print("[watching; type a question and press Enter, Ctrl-D to stop]", file=sys.stderr, flush=True)
    try:
        for line in sys.stdin:
            if failure:
                break
            if line.strip():
                started.wait(timeout=FIRST_FRAME_WAIT_S)  # a question typed at once waits for a frame
                if failure:
                    break
                try:
                    _ask(memory, line.strip(), options, as_json, grounding=grounding)
                except MemstreamError as exc:  # a bad question does not end the session
                    print(f"error: {exc.one_line()}", file=sys.stderr, flush=True)
    finally:
        stop.set()
        thread.join(timeout=10)
    if failure:
        raise failure[0]
    return 0

