"""Quality presets the user picks in the desktop's page: what to give up first when the
machine or the link cannot carry everything.

- **Auto**: up to 60 fps at the resolution's normal bitrate, at full resolution; on a slow
  link the picture is encoded smaller before it gets blurry.
- **Sharp text**: 30 fps, a finer quality and 1.5x the bitrate, never encoded smaller: for
  reading code, spectra, tables.
- **Smooth motion**: 60 fps; above 1920x1080, sustained motion is encoded at 1920x1080 (a 4K
  frame costs 4x to grab and encode) and shown scaled, and the full picture follows when it
  stops: for rotating a 3D reconstruction on a big screen.
- **Low bandwidth**: 20 fps at a quarter of the bitrate and a coarser quality, encoded
  smaller when needed: for home connections and trains.

The bitrate is a ceiling: the encoder keeps a constant quality (``crf``, x264's scale: 0 is
lossless, 51 the coarsest; each 6 halves the bits) and spends at most the bitrate, which
full-screen motion reaches and typing in a terminal does not.

Auto does not encode motion smaller: the browser must then scale every picture up, which a
browser without a GPU cannot afford (measured at 3840x2160 in headless Chromium, which
draws in software: 22-24 pictures shown a second from 1920x1080 motion against 30-33 from
full-resolution pictures, which cost the desktop more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    fps: float  # the most frames per second
    quality: float  # the bitrate's ceiling, as a multiple of the resolution's normal bitrate
    smallest_scale: float  # the smallest scale the picture may be encoded at (1: never smaller)
    max_encoded_pixels: int = 3840 * 2160  # above this the picture is encoded smaller
    # While the screen keeps changing, it is encoded at most this large; when it stops, the
    # full picture follows (a 4K frame costs 4x to convert and encode, 4x to decode).
    motion_pixels: int = 3840 * 2160
    crf: int = 23  # the constant quality below the ceiling (x264's CRF: lower is finer)

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "fps": self.fps}


PRESETS = {p.name: p for p in (
    Preset("auto", "Auto", fps=60, quality=1.0, smallest_scale=0.5),
    Preset("sharp-text", "Sharp text", fps=30, quality=1.5, smallest_scale=1.0, crf=20),
    Preset("smooth-motion", "Smooth motion", fps=60, quality=1.0, smallest_scale=0.5, motion_pixels=1920 * 1080),
    Preset("low-bandwidth", "Low bandwidth", fps=20, quality=0.25, smallest_scale=0.5, crf=28),
)}
DEFAULT = "auto"


def encoded_scale(preset: Preset, width: int, height: int, link_bitrate: float, floor_bitrate: float) -> float:
    """How much smaller than the screen the picture is encoded: to stay within the preset's
    pixel budget, and, when the link carries less than the resolution needs at its floor
    (``floor_bitrate``), by the square root of the shortfall (bits go with pixels), in
    steps of a quarter, down to the preset's smallest scale."""
    scale = min(1.0, (preset.max_encoded_pixels / (width * height)) ** 0.5)
    if link_bitrate < floor_bitrate:
        scale = min(scale, (link_bitrate / floor_bitrate) ** 0.5)
    if scale >= 1.0:
        return 1.0
    return max(preset.smallest_scale, math.floor(scale * 4) / 4)
