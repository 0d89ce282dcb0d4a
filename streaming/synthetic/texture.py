"""Procedural surface colour: a two-colour pattern (stripes / checker / plain) times a noise texture.

Patterns are functions of surface coordinates in metres (world coordinates for the room, object
coordinates for objects), so they stick to the surface under any camera or object motion.
"""

from __future__ import annotations

import numpy as np

from memstream.streaming.synthetic.scene import Appearance

TEXTURE_SIZE = 64  # noise texels per side; a power of two so "% size" is "& (size - 1)"
TEXELS_PER_M = 40.0
_OFFSET = 4096.0  # shifts coordinates positive (|u| < 100 m) so int truncation equals floor; even


def noise_texture(appearance: Appearance) -> np.ndarray:
    """float32 (T, T) multiplicative noise around 1.0, fixed by ``appearance.texture_seed``."""
    rng = np.random.default_rng(appearance.texture_seed)
    return (1.0 + appearance.noise * rng.uniform(-1, 1, (TEXTURE_SIZE, TEXTURE_SIZE))).astype(np.float32)


def pattern_steps(appearance: Appearance) -> tuple[float, float]:
    """Pattern cells per metre along ``u`` and ``v``; 0 means "no change along that axis"."""
    s = appearance.cells_per_m
    return {"stripes": (s, 0.0), "checker": (s, s), "plain": (0.0, 0.0)}[appearance.pattern]


def pattern_bit(u_m: np.ndarray, v_m: np.ndarray, steps_u, steps_v) -> np.ndarray:
    """0/1 pattern colour index; ``steps_*`` are scalars or arrays broadcastable to ``u_m``."""
    cells = (u_m * steps_u + _OFFSET).astype(np.int32) + (v_m * steps_v + _OFFSET).astype(np.int32)
    return cells & 1


def texel_index(u_m: np.ndarray, v_m: np.ndarray) -> np.ndarray:
    """Flat index into a (T, T) noise texture at surface coordinates ``u_m, v_m``."""
    mask = TEXTURE_SIZE - 1
    tu = (u_m * TEXELS_PER_M + _OFFSET).astype(np.int32) & mask
    tv = (v_m * TEXELS_PER_M + _OFFSET).astype(np.int32) & mask
    return tu + TEXTURE_SIZE * tv


class ObjectTexture:
    """Colour lookup for one object's surface: pattern colour x noise texel, as RGBA rows.

    Entries are gathered as complex128 views of four float32 (see :class:`RoomTexture`).
    """

    def __init__(self, appearance: Appearance) -> None:
        self._steps = pattern_steps(appearance)
        noise = noise_texture(appearance).ravel()
        table = np.zeros((2, noise.size, 4), np.float32)
        for bit, color in enumerate((appearance.color_a, appearance.color_b)):
            table[bit, :, :3] = np.outer(noise, np.asarray(color, np.float32))
        self._table = table.reshape(-1, 4).view(np.complex128).ravel()

    def albedo(self, u_m: np.ndarray, v_m: np.ndarray) -> np.ndarray:
        """float32 (m, 4) unlit RGBA (alpha 0) at surface coordinates (m,) in metres."""
        index = pattern_bit(u_m, v_m, *self._steps) * (TEXTURE_SIZE * TEXTURE_SIZE) + texel_index(u_m, v_m)
        return np.take(self._table, index).view(np.float32).reshape(len(index), 4)


class RoomTexture:
    """Lookup tables that colour all six inner faces of a room in a few full-frame operations.

    Colour = pattern colour x noise texel x face shade, gathered from one table of
    ``6 faces x 2 pattern colours x T*T texels`` RGBA float32 entries. Each entry is viewed as one
    complex128 so the gather moves 16-byte items in a single ``np.take`` (3x faster than an
    ``axis=0`` take of RGB rows).

    Args:
        faces: appearance of each inner face, in :class:`~memstream.streaming.synthetic.raycast.RoomHits`
            face order (-x, +x, ceiling, floor, -z, +z).
        shade: (6,) light factor of each face (Lambertian + ambient; faces are flat).
    """

    def __init__(self, faces: list[Appearance], shade: np.ndarray) -> None:
        steps = np.array([pattern_steps(a) for a in faces], np.float32)
        self._steps_u, self._steps_v = steps[:, 0], steps[:, 1]
        texels = TEXTURE_SIZE * TEXTURE_SIZE
        table = np.zeros((len(faces), 2, texels, 4), np.float32)
        for f, (appearance, face_shade) in enumerate(zip(faces, shade)):
            noise = noise_texture(appearance).ravel()
            for bit, color in enumerate((appearance.color_a, appearance.color_b)):
                table[f, bit, :, :3] = np.outer(noise, np.asarray(color, np.float32) * face_shade)
        self._table = table.reshape(-1, 4).view(np.complex128).ravel()

    def color(self, face: np.ndarray, u_m: np.ndarray, v_m: np.ndarray) -> np.ndarray:
        """float32 (H, W, 4) lit RGB colour (alpha channel 0) from per-pixel face ids and coordinates."""
        face = face.astype(np.intp)
        bit = pattern_bit(u_m, v_m, np.take(self._steps_u, face), np.take(self._steps_v, face))
        index = (face * 2 + bit) * (TEXTURE_SIZE * TEXTURE_SIZE) + texel_index(u_m, v_m)
        return np.take(self._table, index).view(np.float32).reshape(*face.shape, 4)
