"""The pipeline: a source's frames through stages, one thread per stage, bounded queues between them.

``runner.py`` holds the :class:`Runner` (threads, queues, backpressure, errors), ``protocol.py`` the
small contract a stage implements (:class:`Stage`, :class:`RunContext`, :class:`Upstream`),
``stages.py`` the stage registry :data:`STAGES` (filled from the ``memstream.stages`` entry points)
and the built-in ``video_writer`` stage, ``run.py`` :func:`run_pipeline`, which builds a run from a
:class:`~memstream.streaming.config.RunConfig` and writes ``config.yaml`` and ``summary.json``.
Names are loaded on first use, so a stage that imports the protocol pays for nothing else.

Example:
    >>> from memstream.streaming import open_source
    >>> from memstream.streaming.pipeline import Runner
    >>> class Brightness:  # a stage: open / update / close / summary
    ...     name = "brightness"
    ...     def open(self, context): self.means = []
    ...     def update(self, frame, upstream): self.means.append(float(frame.rgb.mean())); return self.means[-1]
    ...     def close(self): pass
    ...     def summary(self): return {"frames": len(self.means)}
    >>> with open_source("synthetic://demo?frames=3&size=64x48") as source:
    ...     summary = Runner(source, [Brightness()]).run()
    >>> summary.frames_processed, summary.as_dict()["stages"]["brightness"]["outputs"]
    (3, {'frames': 3})
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use
    "LatencyStats": "memstream.streaming.pipeline.metrics",
    "RunContext": "memstream.streaming.pipeline.protocol",
    "Stage": "memstream.streaming.pipeline.protocol",
    "Upstream": "memstream.streaming.pipeline.protocol",
    "RunSummary": "memstream.streaming.pipeline.runner",
    "Runner": "memstream.streaming.pipeline.runner",
    "STAGES": "memstream.streaming.pipeline.stages",
    "StageFactory": "memstream.streaming.pipeline.stages",
    "VideoWriterStage": "memstream.streaming.pipeline.stages",
    "build_stage": "memstream.streaming.pipeline.stages",
    "discover_stages": "memstream.streaming.pipeline.stages",
    "parse_options": "memstream.streaming.pipeline.stages",
    "run_pipeline": "memstream.streaming.pipeline.run",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
