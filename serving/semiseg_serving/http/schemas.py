"""The service's JSON bodies as pydantic models: they describe the API in ``/openapi.json`` (FastAPI reads them).

Handlers build their responses directly (the JSON is written once, by the code that serves it); these models are the
published contract, and the tests validate real responses against them.
"""
from __future__ import annotations

from typing import Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable error code for clients to branch on (table in the API docs)")
    message: str = Field(description="one line saying what was wrong and what would be valid")


class ErrorBody(BaseModel):
    """Every refusal: ``{"error": {"code", "message"}}``; the code is also in the ``X-Error-Code`` header."""

    error: ErrorDetail


class ModelIdentity(BaseModel):
    name: str = Field(description="the model file's name")
    version: str = Field(description="content hash of the model file")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    model: ModelIdentity


class ModelInfo(BaseModel):
    """Name, version, provider, the metadata embedded at export (classes, normalisation, ...) and the settings."""

    model_config = ConfigDict(extra="allow")
    name: str
    version: str
    provider: str = Field(description="the onnxruntime execution provider running the model")
    store_version: Optional[str] = Field(None, description="the model store's version, when serving a store")
    service: Dict[str, object] = Field(description="the service's settings (limits, batching, timeouts)")


class RowMajorRLE(BaseModel):
    """Runs of the row-major flattened class-id mask: ``values[i]`` repeated ``counts[i]`` times."""

    encoding: Literal["rle-row-major"]
    size: List[int] = Field(description="[height, width]")
    values: List[int]
    counts: List[int]


class CocoSegmentation(BaseModel):
    size: List[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE (column-major), as pycocotools.mask.encode writes it")


class CocoClassMask(BaseModel):
    class_id: int
    class_: str = Field(alias="class")
    area: int = Field(description="pixels of this class")
    segmentation: CocoSegmentation


class CocoMasks(BaseModel):
    """One COCO RLE per class present in the mask (``?mask_encoding=coco``)."""

    encoding: Literal["coco-rle"]
    size: List[int] = Field(description="[height, width]")
    classes: List[CocoClassMask]


class Latency(BaseModel):
    total: float
    decode: float
    queue: float
    inference: float
    postprocess: float


class SegmentJSON(BaseModel):
    """The JSON answer of ``/v1/segment`` (``?format=json`` or ``Accept: application/json``)."""

    model: ModelIdentity
    size: List[int] = Field(description="[height, width] of the input image and of the mask")
    classes: List[str]
    mask: Union[RowMajorRLE, CocoMasks] = Field(discriminator="encoding")
    pixel_counts: Dict[str, int]
    mean_confidence: float = Field(description="mean over pixels of the highest softmax probability")
    batch_size: int = Field(description="images in the network call this image ran in")
    latency_ms: Latency


class ReloadResult(BaseModel):
    reloaded: bool
    model: ModelIdentity
    previous: Optional[ModelIdentity] = None
