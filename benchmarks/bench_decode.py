"""Decode throughput of decord vs PyAV vs OpenCV on 720p and 1080p H.264, raw and through our Source.

The inputs are rendered by the synthetic source (``synthetic://demo``) and encoded with our
H.264 writer, then cached in benchmarks/data/. Each measurement decodes every frame to an RGB
numpy array; repeats are interleaved across backends and the median is reported, with the ratio
to the fastest backend at that resolution.

    python benchmarks/bench_decode.py [--frames 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2

from _common import DATA, print_table, save
from memstream.streaming import open_source
from memstream.streaming.videoio import VideoWriter

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def make_video(label: str, frames: int) -> str:
    width, height = SIZES[label]
    path = DATA / f"demo_{label}_{frames}.mp4"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        with open_source(f"synthetic://demo?frames={frames}&size={width}x{height}") as source, VideoWriter(path, 30, codec="h264", crf=20) as w:
            for frame in source:
                w.write(frame.rgb)
    return str(path)


def raw_decord(path: str) -> int:
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0))
    count = 0
    for start in range(0, len(reader), 32):
        count += len(reader.get_batch(list(range(start, min(start + 32, len(reader))))).asnumpy())
    return count


def raw_pyav(path: str) -> int:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="rgb24") is not None)


def raw_opencv(path: str) -> int:
    capture = cv2.VideoCapture(path)
    count = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        count += 1
    capture.release()
    return count


def through_source(backend: str):
    def run(path: str) -> int:
        with open_source(path, backend=backend) as source:
            return sum(1 for _ in source)

    return run


RAW = {"decord": raw_decord, "pyav": raw_pyav, "opencv": raw_opencv}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results, rows = [], []
    for label in SIZES:
        path = make_video(label, args.frames)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):
            for backend in RAW:
                for mode, fn in (("raw", RAW[backend]), ("source", through_source(backend))):
                    started = time.perf_counter()
                    count = fn(path)
                    times.setdefault((backend, mode), []).append(time.perf_counter() - started)
                    assert count == args.frames, f"{backend}/{mode} decoded {count} of {args.frames}"
        fps = {key: args.frames / statistics.median(values) for key, values in times.items()}
        fastest = max(fps[(b, "source")] for b in RAW)
        for backend in RAW:
            raw, src = fps[(backend, "raw")], fps[(backend, "source")]
            results.append({"size": label, "backend": backend, "raw_fps": round(raw, 1), "source_fps": round(src, 1),
                            "source_over_raw": round(src / raw, 3), "ratio_to_fastest": round(src / fastest, 3)})
            rows.append([label, backend, raw, src, src / raw, src / fastest])
    print_table(f"decode throughput, {args.frames} H.264 frames (median of {args.repeats})",
                ["size", "backend", "raw fps", "source fps", "source/raw", "vs fastest"], rows)
    print(f"wrote {save('decode', {'frames': args.frames, 'repeats': args.repeats, 'results': results})}")


if __name__ == "__main__":
    main()
