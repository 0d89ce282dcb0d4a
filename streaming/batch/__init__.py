"""``memstream batch``: a pipeline preset over many videos, locally or on a Ray cluster.

``run.py`` holds :func:`run_batch` and :class:`BatchConfig` (the folder layout, resuming),
``inputs.py`` what a batch runs over (a folder or a manifest), ``results.py`` the results file
``batch.jsonl``, ``attempt.py`` one video on a worker (a ``memstream run`` process per attempt,
retries), ``local.py`` the local pool and ``on_ray.py`` the Ray Data pipeline.

Example:
    >>> import tempfile, pathlib
    >>> from memstream.streaming.batch import BatchConfig, run_batch
    >>> from memstream.streaming.config import load_config
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (tmp / "videos.txt").write_text("synthetic://demo?frames=3&size=64x48\\n")
    >>> summary = run_batch(tmp / "videos.txt", load_config("decode_only"), tmp / "out", BatchConfig(workers=1))
    >>> summary["ok"], sorted(p.name for p in (tmp / "out" / "demo").iterdir())
    (1, ['config.yaml', 'summary.json'])
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use
    "BatchConfig": "memstream.streaming.batch.run",
    "BatchItem": "memstream.streaming.batch.inputs",
    "ResultLog": "memstream.streaming.batch.results",
    "read_inputs": "memstream.streaming.batch.inputs",
    "run_batch": "memstream.streaming.batch.run",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
