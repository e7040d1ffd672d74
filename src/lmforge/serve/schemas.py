"""Request bodies of every route, as pydantic models (they are the OpenAPI schema).

Types are strict where a coercion would hide a client's bug (a number where a text belongs is
a 422, not the text "3"). Size limits that depend on the server's flags (texts per request,
characters per text, max_tokens, n) are checked in the routes against ``Limits``, so the
error names the flag to raise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr


def _utf8(text: str) -> str:
    """JSON may carry lone surrogates (``"\\ud800"``); no tokenizer can read them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"character {e.start} is a lone surrogate, not text") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_utf8)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Text | None = Field(None, description="The served model's id (optional here).")


class TextsRequest(Body):
    texts: list[Text] = Field(..., description="Texts to label, one result each, in order.")


class ClassifyRequest(TextsRequest):
    top_k: StrictInt | None = Field(None, ge=1, description="Keep the k likeliest labels.")


class QARequest(Body):
    question: Text = Field(..., description="The question.")
    context: Text = Field(..., description="The text the answer is a span of.")


class TranslateRequest(TextsRequest):
    max_tokens: StrictInt | None = Field(None, ge=1, description="Tokens per translation.")


Pixel = StrictInt | float
Image = list[list[Pixel]] | list[list[list[Pixel]]]


class ImageRequest(Body):
    images: list[Text | Image] = Field(
        ..., description="Base64 PNG/JPEG files, or rows of grey values or [r, g, b] triples."
    )
    top_k: StrictInt | None = Field(None, ge=1, description="Keep the k likeliest labels.")


class EntitySpan(BaseModel):
    """One entity of a NER correction, as ``/v1/ner`` answers it (``text`` is ignored)."""

    model_config = ConfigDict(extra="forbid")
    type: Text = Field(..., description="The entity type (PER, LOC, ...).")
    start: StrictInt = Field(..., ge=0, description="Character offset of its first character.")
    end: StrictInt = Field(..., ge=0, description="Character offset just after its last one.")
    text: Text | None = None


class AnswerSpan(BaseModel):
    """A QA correction with the answer's place in the context (``/v1/qa``'s shape)."""

    model_config = ConfigDict(extra="ignore")  # a /v1/qa result sent back (end, score) is fine
    answer: Text = Field(..., description="The answer, a span of the context.")
    start: StrictInt | None = Field(None, ge=0, description="Its character offset.")


class QAInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Text
    context: Text


class FeedbackRequest(Body):
    response_id: Text = Field(..., description="The `id` of the response this is about.")
    rating: StrictInt | None = Field(None, ge=1, le=5, description="1 (bad) to 5 (good).")
    correction: Text | list[Text] | list[EntitySpan] | AnswerSpan | None = Field(
        None,
        description="The right label (list: labels), entities (NER: [{type, start, end}], [] "
        "for none), answer (QA: text or {answer, start}), translation or reply.",
    )
    input: Text | QAInput | None = Field(
        None,
        description="The input text, QA: {question, context} (needed by `lmforge improve` "
        "without --log-inputs).",
    )
    comment: Text | None = Field(None, description="Free text.")


# ---------------------------------------------------------------- OpenAI-compatible


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: Text | None = None
    schema_: dict[str, Any] = Field(
        ..., alias="schema", description="The JSON schema every choice must satisfy."
    )
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: the output is constrained while it is generated (a
    logits processor), so it parses every time rather than being checked afterwards."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class GenerationBody(BaseModel):
    """Fields shared by /v1/completions and /v1/chat/completions (OpenAI's names)."""

    model_config = ConfigDict(extra="ignore")  # the openai client may add fields we ignore
    model: Text
    max_tokens: StrictInt | None = Field(None, ge=1, description="New tokens per choice.")
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    n: StrictInt = Field(1, ge=1, description="Choices per prompt.")
    stop: Text | list[Text] | None = Field(None, description="Up to 4 strings ending a choice.")
    seed: StrictInt | None = Field(
        None, ge=0, le=2**62, description="Same seed, same prompt: same text."
    )
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: Any = Field(None, description="Not supported (must be null/false).")
    response_format: ResponseFormat | None = Field(
        None, description="json_object or json_schema: constrained decoding; text: none."
    )


class CompletionRequest(GenerationBody):
    prompt: Text | list[Text] = Field(..., description="Text(s) to continue.")
    echo: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message text; content parts other than text are refused by the route."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(p.get("text", "")) for p in self.content)


class ChatRequest(GenerationBody):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: Text
    input: Text | list[Text] = Field(..., description="Text(s) to embed.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1)
