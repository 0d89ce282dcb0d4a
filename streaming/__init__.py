"""memstream's streaming side: frames and sources, the pipeline, the video KV memory, the QA service, the CLI.

What it holds:
    - frames and where they come from: :class:`Frame` and the shared types (``types.py``), sources
      opened by :func:`open_source` (``sources/``: video files, image folders, TUM RGB-D, cameras,
      RTSP/HTTP, synthetic scenes), procedural scenes with exact ground truth (``synthetic/``) and
      video writing (``videoio.py``);
    - the pipeline (``pipeline/``): the :class:`Runner` moving frames through stages on threads
      with bounded queues, the :class:`Stage` protocol, the stage registry (stages of other
      packages are found through the ``memstream.stages`` entry points) and the typed run
      configuration (``config.py``);
    - the video KV memory (``videomem/``): ReKV and Flash-VStream over Video-LLM adapters, the
      ``video_memory`` stage and the streaming QA service;
    - many videos at once (``batch/``): ``memstream batch`` runs a preset over a folder or a
      manifest of videos, in a local pool or through Ray Data on a cluster, resumable;
    - the ``memstream`` command (``cli.py``).

Importing this package is light (no torch, transformers or open3d; not even numpy): every name
below but the errors is loaded on first use.

Example:
    >>> from memstream.streaming import Runner, open_source
    >>> with open_source("synthetic://demo?frames=4&size=64x48") as source:
    ...     first = next(iter(source))
    >>> first.index, first.rgb.shape
    (0, (48, 64, 3))
    >>> with open_source("synthetic://demo?frames=4&size=64x48") as source:
    ...     Runner(source, []).run().frames_processed
    4
"""

if __name__ != "memstream.streaming":  # imported by the bare name: it is another distribution's
    from memstream.kernels.bare_name import hand_over

    hand_over(__name__)
else:
    from memstream.streaming.errors import ConfigError, MemstreamError, SourceError, StageError, UnknownSourceError

    __version__ = "0.1.0"

    from memstream.streaming.lazy import lazy_attributes

    _LAZY = {  # name -> module that defines it, imported on first use
        # frames and sources (numpy, OpenCV)
        "Frame": "memstream.streaming.types",
        "FrameGroundTruth": "memstream.streaming.types",
        "SourceInfo": "memstream.streaming.types",
        "SOURCES": "memstream.streaming.sources",
        "Source": "memstream.streaming.sources",
        "SourceOptions": "memstream.streaming.sources",
        "SourceSpec": "memstream.streaming.sources",
        "open_source": "memstream.streaming.sources",
        "register_source": "memstream.streaming.sources",
        "Scene": "memstream.streaming.synthetic.build",
        "SceneSpec": "memstream.streaming.synthetic.scene",
        "build_scene": "memstream.streaming.synthetic.build",
        "write_scene": "memstream.streaming.synthetic.writer",
        "VideoWriter": "memstream.streaming.videoio",
        "write_video": "memstream.streaming.videoio",
        # the pipeline (pydantic, yaml)
        "Runner": "memstream.streaming.pipeline.runner",
        "RunSummary": "memstream.streaming.pipeline.runner",
        "RunContext": "memstream.streaming.pipeline.protocol",
        "Stage": "memstream.streaming.pipeline.protocol",
        "Upstream": "memstream.streaming.pipeline.protocol",
        "STAGES": "memstream.streaming.pipeline.stages",
        "build_stage": "memstream.streaming.pipeline.stages",
        "run_pipeline": "memstream.streaming.pipeline.run",
        "RunConfig": "memstream.streaming.config",
        "load_config": "memstream.streaming.config",
        # the video KV memory and the QA service (torch, transformers)
        "Answer": "memstream.streaming.videomem.types",
        "ReKVMemory": "memstream.streaming.videomem.rekv",
        "FlashVStreamMemory": "memstream.streaming.videomem.flash.video_memory",
        "load_video_llm": "memstream.streaming.videomem.adapters",
        "VideoQAService": "memstream.streaming.videomem.serve",
    }

    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

    __all__ = sorted(["ConfigError", "MemstreamError", "SourceError", "StageError", "UnknownSourceError", *_LAZY])
