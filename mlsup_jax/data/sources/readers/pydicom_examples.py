"""Real DICOM images shipped inside the pydicom wheel, grouped by modality → a labelled source.

pydicom's test files (`pydicom.data.get_testdata_files()`) include real MR, CT, ultrasound, CR,
NM and secondary-capture images in many encodings. They are tiny as a data set, but they are
real scanner images, useful as inter-class OOD for radiograph detectors and to exercise the
DICOM path end to end with no download: only files already on disk are used, and files whose
transfer syntax needs a decoder plugin that is not installed are skipped (and counted).

The same image stored in several encodings (e.g. `MR_small` in eight transfer syntaxes) shares
its SOP Instance UID; by default only its first copy (in path order) is kept.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
from absl import logging

from mlsup_jax.data.sources.readers.class_folder import percentile_normalize, resize_image

DEFAULT_MODALITIES = ("MR", "CT", "US")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _frames(dataset, max_frames: int) -> tuple[list[int], np.ndarray]:
  """Decoded grey frames of one dataset in modality units.

  Multi-frame files give at most `max_frames` frames, evenly spaced; colour (RGB, YBR, which
  pydicom converts to RGB, and palette colour) becomes BT.601 luma; grey images get
  RescaleSlope / RescaleIntercept (or the modality LUT) applied; MONOCHROME1 (inverted grey)
  is flipped so that brighter always means more signal.

  Returns:
    The kept frame numbers and their pixels, `[F, H, W]` float32.
  """
  from pydicom.pixels import apply_color_lut, apply_modality_lut

  pixels = dataset.pixel_array
  count = int(dataset.get("NumberOfFrames", 1) or 1)
  photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
  if photometric == "PALETTE COLOR":
    pixels = apply_color_lut(pixels, dataset)
  colour = photometric == "PALETTE COLOR" or int(dataset.get("SamplesPerPixel", 1) or 1) > 1
  if count == 1:
    pixels = pixels[None]
  keep = np.unique(np.linspace(0, count - 1, min(count, max_frames)).round().astype(int))
  pixels = pixels[keep]
  if colour:
    grey = pixels[..., :3].astype(np.float32) @ _LUMA
  else:
    grey = np.asarray(apply_modality_lut(pixels, dataset), np.float32)
  if photometric == "MONOCHROME1":
    grey = -grey
  return keep.tolist(), grey


@contextlib.contextmanager
def _quiet_pydicom():
  """Silences pydicom's warnings and log messages (its test files are deliberately odd)."""
  import pydicom

  level = pydicom.config.logger.level
  pydicom.config.logger.setLevel("ERROR")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      yield
  finally:
    pydicom.config.logger.setLevel(level)


def _read_file(path: str, modalities: Sequence[str], max_frames: int, min_side: int):
  """Reads one test file.

  Returns:
    `(skip_reason, modality, sop_instance_uid, frame_numbers, [F, H, W] pixels)`, with
    `skip_reason` None for a usable image, else why it is left out.
  """
  import pydicom

  try:
    dataset = pydicom.dcmread(path)
  except Exception:  # Not DICOM, or deliberately broken.
    return "unreadable", None, None, None, None
  if not any(k in dataset for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
    return "no pixel data", None, None, None, None
  modality = str(dataset.get("Modality", "") or "")
  if modality not in modalities:
    return "other modality", modality, None, None, None
  try:
    frames, pixels = _frames(dataset, max_frames)
  except Exception:  # A compressed syntax without its decoder plugin, or truncated data.
    return "undecodable", modality, None, None, None
  if min(pixels.shape[1:3]) < min_side:
    return "too small", modality, None, None, None
  return None, modality, str(dataset.get("SOPInstanceUID", path)), frames, pixels


class PydicomExamplesSource:
  """The 2-D frames of pydicom's bundled DICOM test files of some modalities, by modality.

  All frames are decoded once, at construction (well under a second). Each frame is normalised
  by a robust min–max (1st–99th percentile) to [0, 1] and resized (bilinear, aspect ratio not
  kept) to `image_size`².

  Example: `image: [S, S, 1]` float32 in [0, 1], `class_id: []` int32, the index of the frame's
  DICOM Modality (0008,0060) in `modalities`.

  Args:
    modalities: DICOM Modality codes to keep, e.g. ("MR", "CT", "US"); their order sets
      `class_id`. Other codes available: "OT" (secondary capture), "CR", "NM", "RTDOSE", "SEG".
    image_size: S.
    max_frames_per_file: at most this many (evenly spaced) frames from a multi-frame file, so
      that one cine loop does not dominate.
    min_side: frames with a side shorter than this are skipped: by default the 3×3 test images
      and the 16×16 thumbnails of the DICOMDIR tests, which carry little more than blur.
    deduplicate: keep one copy of a frame stored in several encodings (same modality, SOP
      Instance UID and frame number).

  Attributes:
    class_ids: `[N]` int32; class_names: `modalities`.
    case_ids: `"<path under pydicom's data folder>#<frame>"` of every example.
    skipped: counts of the files left out, by reason ("undecodable", "unreadable", "no pixel
      data", "other modality", "duplicate", "too small").

  Raises:
    ValueError: on an empty or repeated `modalities`, `image_size` < 1 or
      `max_frames_per_file` < 1; or when a requested modality has no usable frame (the message
      lists the available ones).
  """

  def __init__(
    self,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    image_size: int = 64,
    max_frames_per_file: int = 8,
    min_side: int = 32,
    deduplicate: bool = True,
  ):
    from pydicom.data import get_testdata_files

    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    if not modalities or len(set(modalities)) != len(modalities):
      raise ValueError(f"modalities must be distinct DICOM Modality codes, got {modalities!r}.")
    if int(image_size) < 1 or int(max_frames_per_file) < 1:
      raise ValueError(
        f"image_size and max_frames_per_file must be ≥ 1, got {image_size} and "
        f"{max_frames_per_file}."
      )
    self.modalities = self.class_names = modalities
    self.image_size = int(image_size)
    self.max_frames_per_file = int(max_frames_per_file)
    # Only files on disk: the list may name folders, and nothing may be downloaded.
    paths = sorted(p for p in get_testdata_files() if os.path.isfile(p))
    root = os.path.commonpath(paths) if paths else ""
    images, class_ids, case_ids = [], [], []
    seen: set[tuple] = set()
    available: Counter = Counter()
    self.skipped: Counter = Counter()
    with _quiet_pydicom():
      for path in paths:
        reason, modality, uid, frames, pixels = _read_file(
          path, modalities, self.max_frames_per_file, int(min_side)
        )
        if reason is not None:
          self.skipped[reason] += 1
          continue
        kept = 0
        for frame, grey in zip(frames, pixels, strict=True):
          if deduplicate and (modality, uid, frame) in seen:
            continue
          seen.add((modality, uid, frame))
          kept += 1
          image = resize_image(percentile_normalize(grey)[..., None], self.image_size)
          images.append(np.clip(image, 0.0, 1.0))
          class_ids.append(modalities.index(modality))
          case_ids.append(f"{os.path.relpath(path, root)}#{frame}")
          available[modality] += 1
        if not kept:
          self.skipped["duplicate"] += 1
    missing = [m for m in modalities if not available[m]]
    if missing:
      raise ValueError(
        f"No usable frame of modality {', '.join(missing)} among pydicom's test files (found: "
        f"{dict(available) or 'none'}; skipped: {dict(self.skipped)})."
      )
    self._images = np.stack(images).astype(np.float32)
    self._images.flags.writeable = False
    self.class_ids = np.asarray(class_ids, np.int32)
    self.class_ids.flags.writeable = False
    self.case_ids = case_ids
    self.frame_counts = {m: int(available[m]) for m in modalities}
    logging.info(
      "pydicom_examples: %d frames (%s) from pydicom's test files; skipped %d undecodable "
      "file(s) (compressed syntaxes without a decoder plugin), and %s.",
      len(case_ids),
      ", ".join(f"{m} {n}" for m, n in self.frame_counts.items()),
      self.skipped["undecodable"],
      ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()) if why != "undecodable")
      or "nothing else",
    )

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index) -> dict[str, np.ndarray]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"PydicomExamplesSource index {index} out of range [0, {len(self)}).")
    return {
      "image": self._images[index].copy(),
      "class_id": np.asarray(self.class_ids[index], np.int32),
    }

  def __repr__(self) -> str:
    return f"PydicomExamplesSource({self.frame_counts}, image_size={self.image_size})"
