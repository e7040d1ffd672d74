"""Typed schema of the recipe's ``explain`` section."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from lmforge.core.schema import ExistingPath, PositiveInt, StrictModel

BUILTIN_CONCEPTS = ("sport-en", "praise-zh", "complaint-zh")


class AttributionConfig(StrictModel):
    """Integrated Gradients on the token embeddings, and its faithfulness (AOPC)."""

    steps: PositiveInt = Field(
        50, description="Integration steps of Integrated Gradients (Captum's default)."
    )
    aopc_k: PositiveInt = Field(
        10, description="AOPC deletes the top 1..k ranked tokens (fewer when a text is shorter)."
    )
    random_runs: PositiveInt = Field(
        5, description="Random deletion orders averaged for the random AOPC reference."
    )


class AttackConfig(StrictModel):
    """Adversarial attacks: greedy word-importance search with one candidate generator each."""

    methods: list[str] = Field(
        ["char", "word"],
        min_length=1,
        description="Attacks to run (registry names: char, word, zh-char (homophones), zh-form "
        "(look-alike characters); see lmforge.explain.attacks).",
    )
    max_examples: PositiveInt = Field(50, description="Test examples attacked per method.")
    max_share: float = Field(
        0.25, gt=0, le=1, description="Most of a text's words (or characters) an attack changes."
    )
    candidates: PositiveInt = Field(
        8, description="Replacement candidates tried per word (the search's branching)."
    )

    @field_validator("methods")
    @classmethod
    def _known(cls, methods: list[str]) -> list[str]:
        from lmforge.explain.attacks import ATTACKS

        for name in methods:
            if name not in ATTACKS:
                raise ValueError(ATTACKS.unknown_message(name))
        return methods


class ConceptConfig(StrictModel):
    """One concept: example texts that show it, and the class whose sensitivity is tested."""

    name: str = Field(description="Concept name in the results.")
    target: str = Field(
        description="Class label whose logit's sensitivity to the concept is scored."
    )
    builtin: str | None = Field(
        None, description=f"A concept shipped with lmforge: {', '.join(BUILTIN_CONCEPTS)}."
    )
    examples: ExistingPath | None = Field(
        None, description="UTF-8 text file, one concept example per line."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ConceptConfig:
        if (self.builtin is None) == (self.examples is None):
            raise ValueError("give exactly one of builtin or examples")
        if self.builtin is not None and self.builtin not in BUILTIN_CONCEPTS:
            raise ValueError(
                f"builtin: unknown concept {self.builtin!r}; built-in: {', '.join(BUILTIN_CONCEPTS)}"
            )
        return self


class TcavConfig(StrictModel):
    """Testing with Concept Activation Vectors (Kim et al. 2018)."""

    concepts: list[ConceptConfig] = Field(
        min_length=1, description="Concepts to test (at least one)."
    )
    layers: list[str] | None = Field(
        None,
        description="Layers whose activations are probed: 'embeddings', 'layer.0', ...; "
        "default: every layer.",
    )
    random_runs: int = Field(
        10,
        ge=2,
        description="CAVs trained against different random counter-example sets; the t-test "
        "compares their TCAV scores with random-vs-random ones (10 or more recommended).",
    )
    random_examples: PositiveInt = Field(
        40, description="Random counter-examples per run (snippets of the test texts)."
    )
    max_targets: PositiveInt = Field(
        50, description="Test examples of the target class whose gradients are scored."
    )


class ExplainConfig(StrictModel):
    """Explain a fine-tuned text classifier: attention, attributions, concepts, robustness."""

    model: str = Field(
        "finetune",
        description="'finetune' (this run's fine-tuned model) or a classifier directory.",
    )
    test: ExistingPath | None = Field(
        None,
        description="Texts to explain (csv/jsonl/parquet; finetune.data's columns); default: "
        "the split the finetune stage scored.",
    )
    examples: PositiveInt = Field(
        4, description="Test examples whose attention and attributions are drawn."
    )
    attention: bool = Field(True, description="Attention maps (PNG) and the interactive HTML view.")
    attention_layers: list[int] | None = Field(
        None, description="Layers drawn as PNG heatmaps (default: first and last); HTML has all."
    )
    attribution: AttributionConfig | None = Field(
        default_factory=AttributionConfig,
        description="Integrated Gradients highlights and AOPC; null skips them.",
    )
    attacks: AttackConfig | None = Field(None, description="Adversarial attacks; null skips them.")
    tcav: TcavConfig | None = Field(None, description="Concept activation vectors; null skips.")
