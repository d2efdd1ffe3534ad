"""Procedural scenes for the embedded `shapes` dataset (pure numpy, deterministic).

Five object classes on a textured background. Colours are drawn at random per
object, so colour says nothing about the class. Textures are shared between
pairs of classes (disk and cross are both striped, square and ring both
checkered), so telling those apart needs the shape, while texture separates
the rest. Objects have
varied scales and may overlap (later ones occlude earlier ones); a VOC-style
band of ignore labels (255) runs along every object boundary.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("background", "disk_stripes", "square_checker", "triangle_dots",
               "cross_stripes", "ring_checker")
IGNORE_INDEX = 255
_SHAPE = {1: "disk", 2: "square", 3: "triangle", 4: "cross", 5: "ring"}
_TEXTURE = {1: "stripes", 2: "checker", 3: "dots", 4: "stripes", 5: "checker"}


def _shape_mask(kind: str, yy, xx, cy, cx, size, angle) -> np.ndarray:
  if kind == "disk":
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 2) ** 2
  if kind == "square":
    return (np.abs(yy - cy) <= size / 2) & (np.abs(xx - cx) <= size / 2)
  if kind == "cross":  # A plus sign with arms a third of its size wide.
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    return ((dy <= size / 6) & (dx <= size / 2)) | ((dx <= size / 6) & (dy <= size / 2))
  if kind == "ring":  # An annulus whose band is a third of the radius, at least 6 px.
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    inner = max(size / 2 - max(size / 6, 6.0), 0.0)
    return (r2 <= (size / 2) ** 2) & (r2 >= inner**2)
  # Equilateral triangle: inside all three half-planes around the centre.
  inside = np.ones_like(yy, dtype=bool)
  for k in range(3):
    theta = angle + 2 * np.pi * k / 3
    inside &= (np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)) <= size / 3
  return inside


def _texture(kind: str, yy, xx, rng: np.random.Generator) -> np.ndarray:
  """A {0,1} pattern; the two levels get two random colours."""
  period = rng.uniform(4.0, 7.0)
  if kind == "stripes":
    theta = rng.uniform(0, np.pi)
    u = np.cos(theta) * xx + np.sin(theta) * yy
    return (np.floor(u / (period / 2)) % 2).astype(np.float32)
  if kind == "checker":
    return ((np.floor(xx / (period / 2)) + np.floor(yy / (period / 2))) % 2).astype(np.float32)
  # Dots on a square lattice.
  fy = (yy % period) - period / 2
  fx = (xx % period) - period / 2
  return ((fy**2 + fx**2) <= (period / 3.2) ** 2).astype(np.float32)


def _ignore_band(label: np.ndarray) -> np.ndarray:
  """Mark pixels whose 3x3 neighbourhood holds another class (a 2-pixel band)."""
  padded = np.pad(label, 1, mode="edge")
  H, W = label.shape
  boundary = np.zeros_like(label, dtype=bool)
  for dy in (0, 1, 2):
    for dx in (0, 1, 2):
      boundary |= padded[dy:dy + H, dx:dx + W] != label
  out = label.copy()
  out[boundary] = IGNORE_INDEX
  return out


def render_scene(seed: int, size: int = 64, max_objects: int = 4):
  """Returns (image_HW3 uint8, label_HW uint8) for one deterministic scene."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  # Background: a smooth random gradient plus noise, so it is not a flat colour.
  c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
  t = (np.cos(rng.uniform(0, np.pi)) * xx + np.sin(rng.uniform(0, np.pi)) * yy) / (2 * size)
  image = c0 + (c1 - c0) * (t[..., None] + 0.5) * 0.6
  label = np.zeros((size, size), np.uint8)
  for _ in range(rng.integers(1, max_objects + 1)):
    cls = int(rng.integers(1, len(CLASS_NAMES)))
    obj_size = rng.uniform(0.2, 0.6) * size
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    mask = _shape_mask(_SHAPE[cls], yy, xx, cy, cx, obj_size, rng.uniform(0, 2 * np.pi))
    pattern = _texture(_TEXTURE[cls], yy, xx, rng)[..., None]
    fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    while np.abs(fg - bg).sum() < 0.6:  # keep the texture visible
      fg = rng.uniform(0, 1, 3)
    image = np.where(mask[..., None], bg + (fg - bg) * pattern, image)
    label[mask] = cls
  image = image + rng.normal(0, 0.04, image.shape)
  image_u8 = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
  return image_u8, _ignore_band(label)
