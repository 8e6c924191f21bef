"""Tiny valid DICOM files for reader tests: 2x2 pixels, only the tags a test names beyond what a file needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian


def write_tiny_dicom(path: Path, sop_class: str, sop_instance: str, **tags: Any) -> None:
    """Write a 2x2, 16-bit MONOCHROME2 image with `tags` (any keyword, e.g. PhotometricInterpretation="MONOCHROME1")."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = sop_class, sop_instance
    dataset.Rows = dataset.Columns = 2
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.PixelData = bytes(8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with config.disable_value_validation():  # releases hold non-standard values such as 'L-SPINE'
        for keyword, value in tags.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path, enforce_file_format=True)
