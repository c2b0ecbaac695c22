"""Request and response bodies of ``m3rag serve`` (pydantic): what the OpenAPI page documents and
what every request is validated against before anything reaches the model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = [
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "EncodeRequest",
    "EncodeResponse",
    "ModelsResponse",
    "RerankDocument",
    "RerankRequest",
    "RerankResponse",
    "ScoreRequest",
    "ScoreResponse",
]

Number = StrictInt | StrictFloat


class _Strict(BaseModel):
    """m3rag's own endpoints: unknown fields are errors (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid")


class _Lenient(BaseModel):
    """The OpenAI- and rerank-compatible endpoints: fields other clients send are ignored."""

    model_config = ConfigDict(extra="ignore")


class EncodeRequest(_Strict):
    texts: list[StrictStr] = Field(description="Texts to encode (at least one; at most the server's max_request_texts).")
    return_dense: StrictBool = True
    return_sparse: StrictBool = False
    return_colbert_vecs: StrictBool = False
    max_length: StrictInt | None = Field(default=None, description="Token limit (specials included); default by `kind`.")
    kind: Literal["query", "passage"] = Field(
        default="passage", description="Which default max_length applies: the query or the passage limit."
    )
    colbert_dtype: Literal["float32", "float16"] = Field(default="float32", description="Precision of the ColBERT block on the wire.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"texts": ["What is BGE M3?"], "return_sparse": True, "return_colbert_vecs": True, "kind": "query"}]
        },
    )


class SparseRow(BaseModel):
    indices: list[int]
    values: list[float]


class ColbertBlock(BaseModel):
    dtype: Literal["float32", "float16"]
    shape: list[int] = Field(description="[total rows, colbert_dim]")
    data: str = Field(description="base64 of the little-endian array, row-major")
    offsets: list[int] = Field(description="text i has rows offsets[i]:offsets[i+1]")


class EncodeData(BaseModel):
    dense: list[list[float]] | None
    sparse: list[SparseRow] | None
    colbert: ColbertBlock | None
    num_tokens: list[int]
    truncated: list[bool]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EncodeResponse(BaseModel):
    object: Literal["encoding"] = "encoding"
    model: str
    data: EncodeData
    usage: Usage


class EmbeddingsRequest(_Lenient):
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(
        description="A text or a list of texts (token ids are refused)."
    )
    model: str | None = Field(default=None, description="Ignored: the server serves one model.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(
        default=None, description="Must equal the model's dimension if given (M3 vectors are not truncatable)."
    )

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"input": ["BGE M3 is an embedding model."], "model": "bge-m3"}]}
    )


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class RerankDocument(_Lenient):
    text: StrictStr


class RerankRequest(_Lenient):
    query: StrictStr
    documents: list[StrictStr | RerankDocument] = Field(description="Texts, or objects with a `text` field.")
    top_n: StrictInt | None = Field(default=None, description="Keep the best top_n (default: all, reordered).")
    mode: Literal["colbert", "hybrid"] = "colbert"
    weights: list[Number] | dict[str, Number] | None = Field(
        default=None, description="Hybrid weights: [dense, sparse, colbert] or by name."
    )
    return_documents: StrictBool = False
    max_query_length: StrictInt | None = None
    max_passage_length: StrictInt | None = None
    model: str | None = Field(default=None, description="Ignored: the server serves one model.")

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"query": "What is BGE M3?", "documents": ["BGE M3 is an embedding model.", "BM25 ranks by terms."], "top_n": 1}]
        },
    )


class RerankResultDocument(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    scores: dict[str, float] = Field(description="Each computed mode's score.")
    document: RerankResultDocument | None = None


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]


class ScoreRequest(_Strict):
    pairs: list[tuple[StrictStr, StrictStr]] = Field(description="(query, passage) pairs.")
    max_query_length: StrictInt | None = None
    max_passage_length: StrictInt | None = None
    weights: list[Number] | None = Field(default=None, description="[w_dense, w_sparse, w_colbert] (default [1, 1, 1]), as FlagEmbedding.")

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"pairs": [["What is BGE M3?", "BGE M3 is an embedding model."]]}]}
    )


class ScoreResponse(BaseModel):
    model: str
    scores: dict[str, list[float]] = Field(description="colbert, sparse, dense, sparse+dense, colbert+sparse+dense: one score per pair.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    m3rag: dict[str, Any] = Field(
        description="Identity (dim, colbert_dim, vocab_size, fingerprint), token limits and the server's request limits."
    )


class ModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
