"""The `quality:` block of a corpus in datasets.yaml: what `t2a qc` measures against, and the policy
the shard stage applies to its measures (docs/qc.md).

Every threshold is optional: left out, the measure is reported but drops nothing.
"""

from __future__ import annotations

from pydantic import Field

from pipelines.core.config import InputDir, StrictModel


class QualityConfig(StrictModel):
    # Policy (the shard stage): a clip failing one of these stays out of the shards, with the reason.
    min_bandwidth_hz: float | None = Field(None, ge=0)  # effective bandwidth: upsampled 8 kHz audio has ~4000 Hz
    max_clipping: float | None = Field(None, ge=0, le=1)  # share of samples at full scale
    min_loudness_lufs: float | None = None  # integrated loudness (ITU-R BS.1770-4)
    max_loudness_lufs: float | None = None
    max_silence: float | None = Field(None, ge=0, le=1)  # share of 20-ms frames below -60 dBFS
    max_dc_offset: float | None = Field(None, ge=0, le=1)  # |mean sample|
    max_speech: float | None = Field(None, ge=0, le=1)  # share of the clip Silero VAD marks as speech
    drop_near_duplicates: bool = False  # keep one clip of each near-duplicate group (the smallest id)
    drop_leaked: bool = True  # drop clips whose audio is a near-duplicate of a leakage_reference clip
    # Measures (`t2a qc`): a changed value re-runs the search, never the per-clip measures.
    near_duplicate_threshold: float = Field(0.98, gt=0, le=1)  # cosine of CLAP audio embeddings
    # Output folders of corpora built from evaluation sets (AudioCaps/Clotho test): their annotation
    # stores' CLAP audio embeddings are what "leaked" compares against, whatever the clip ids.
    leakage_reference: list[InputDir] = []
    speech: bool = True  # run Silero VAD (the `speech` measure)

    def drops(self) -> bool:
        """Whether the policy can drop anything (then the shard stage needs `t2a qc`'s table)."""
        limits = (
            self.min_bandwidth_hz,
            self.max_clipping,
            self.min_loudness_lufs,
            self.max_loudness_lufs,
            self.max_silence,
            self.max_dc_offset,
            self.max_speech,
        )
        return any(v is not None for v in limits) or self.drop_near_duplicates or bool(self.leakage_reference)
