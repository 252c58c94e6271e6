"""Which file suffixes are images and videos: one home for what is read and what is written."""

from __future__ import annotations

# Images OpenCV's imread takes (a photo source or a folder of them); others are tried with
# cv2.haveImageReader.
IMAGE_SUFFIXES = frozenset(
    ".bmp .dib .jpeg .jpg .jpe .jp2 .png .webp .avif .pbm .pgm .ppm .pxm .pnm .pfm .sr .ras "
    ".tiff .tif .exr .hdr .pic".split()
)
# Annotated images are written in these (a subset: the formats every OpenCV build encodes).
OUTPUT_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Containers OpenCV's FFmpeg writer picks from the suffix and that hold the codecs in output.codecs.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
