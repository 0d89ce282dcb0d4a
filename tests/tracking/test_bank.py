"""The bounded per-object memory bank: what a frame attends to, on exact frame numbers (CPU,
tiny tensors; no model needed)."""

from __future__ import annotations

import torch

from memstream.tracking.sam2_stream.bank import MemoryEntry, ObjectMemory


def entry(t: int) -> MemoryEntry:
    return MemoryEntry(t, torch.full((1, 2, 1, 1), float(t)), torch.full((1, 4), float(t)))


def test_affinity_mode_is_sam2s_window_of_the_last_six_frames() -> None:
    bank = ObjectMemory()
    bank.add_cond(entry(0))
    for t in range(1, 21):
        bank.add(entry(t), accepted=True)
    readout = bank.readout(21)
    assert [(t_pos, e.frame_index) for t_pos, e in readout.spatial] == [
        (0, 0), (1, 15), (2, 16), (3, 17), (4, 18), (5, 19), (6, 20)]  # slot 6 = the previous frame
    distances = [d for d, _ in readout.pointers]
    assert distances == [21, *range(1, 16)]  # the prompt frame's pointer, then the last 15 frames


def test_gated_frames_stay_out_but_the_previous_frame_is_always_read() -> None:
    bank = ObjectMemory()
    bank.add_cond(entry(0))
    for t in range(1, 31):
        bank.add(entry(t), accepted=t % 5 == 0)  # 5, 10, ..., 30 pass the gate
    assert [e.frame_index for _, e in bank.readout(31).spatial] == [0, 5, 10, 15, 20, 25, 30]
    bank.add(entry(31), accepted=False)
    # SAMURAI: 5 newest accepted frames + the previous one (frame 31), ranked by recency
    assert [(t, e.frame_index) for t, e in bank.readout(32).spatial] == [
        (0, 0), (1, 10), (2, 15), (3, 20), (4, 25), (5, 30), (6, 31)]
    assert len(bank.readout(32).pointers) == 16  # pointers are SAM 2's: recent frames regardless of the gate


def test_long_occlusion_keeps_the_last_good_frames() -> None:
    bank = ObjectMemory()
    bank.add_cond(entry(0))
    for t in range(1, 8):
        bank.add(entry(t), accepted=True)
    for t in range(8, 500):  # the object is hidden: nothing passes the gate
        bank.add(entry(t), accepted=False)
    readout = bank.readout(500)
    assert [e.frame_index for _, e in readout.spatial] == [0, 3, 4, 5, 6, 7, 499]
    assert [d for d, _ in readout.pointers][0] == 500 and len(readout.pointers) == 16


def test_size_is_bounded_and_entries_are_shared_not_copied() -> None:
    bank = ObjectMemory()
    bank.add_cond(entry(0))
    sizes = []
    for t in range(1, 200):
        bank.add(entry(t), accepted=True)
        sizes.append(bank.nbytes())
    features, pointer = 2 * 4, 4 * 4  # bytes of one entry's tensors
    # 7 spatial memories (prompt + 6 accepted, the previous among them) and 16 pointers (prompt + 15)
    assert sizes[-1] == sizes[50] == 7 * features + 16 * pointer
    assert bank.frames()["accepted"] == list(range(194, 200))


def test_objects_with_the_same_layout_batch_together() -> None:
    a, b, c = ObjectMemory(), ObjectMemory(), ObjectMemory()
    for bank, start in ((a, 0), (b, 3), (c, 9)):
        bank.add_cond(entry(start))
        for t in range(start + 1, 10):
            bank.add(entry(t), accepted=True)
    assert a.readout(30).layout == b.readout(30).layout  # both full: 1 cond + 6 memories
    assert c.readout(30).layout != a.readout(30).layout  # joined late: fewer memories
