"""Time-tag file formats: detection, headers, decode kernels and writers."""

from .base import SourceInfo, Tag
from .registry import (FORMAT_BH_spc_4bytes, FORMAT_ET_A033, FORMAT_PQ, FORMAT_PQ_LEGACY,
                       FORMAT_QT_BINARY, FORMAT_QT_COMPRESSED, FORMAT_QT_RAW, FORMAT_SI,
                       FORMAT_SI_16bytes, bh_spc_4bytes, detect_format, formats, open_source,
                       quTAG_FORMAT_BINARY, quTAG_FORMAT_COMPRESSED)

__all__ = ["SourceInfo", "Tag", "open_source", "detect_format", "formats", "FORMAT_PQ",
           "FORMAT_SI_16bytes", "FORMAT_SI", "FORMAT_QT_COMPRESSED", "FORMAT_QT_RAW",
           "FORMAT_QT_BINARY", "FORMAT_BH_spc_4bytes", "FORMAT_ET_A033", "FORMAT_PQ_LEGACY",
           "quTAG_FORMAT_BINARY", "quTAG_FORMAT_COMPRESSED", "bh_spc_4bytes"]
