"""A clip's log-mel spectrogram as a small PNG (the report's listening table and the review page)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.core.features import MelExtractor, get_profile, load_audio

SPECTROGRAM_PROFILE = "audioldm"  # 16 kHz, 64 mels, hop 10 ms: AudioLDM App. D
# PNG text chunks would carry the matplotlib version: keep the bytes independent of it.
_PNG_METADATA = {"Software": None}
_STYLE = {"font.size": 8, "axes.spines.top": False, "axes.spines.right": False}


def spectrogram_png(audio_path: Path, path: Path, extractor: MelExtractor | None = None) -> Path:
    """The clip's log-mel (the AudioLDM profile, real frames only) as a small PNG."""
    extractor = extractor or MelExtractor(get_profile(SPECTROGRAM_PROFILE))
    mel, real = extractor(*load_audio(audio_path))  # [64, 1024], frames before the silence padding
    mel = mel[:, : max(real, 1)]
    seconds = mel.shape[1] * extractor.profile.hop_length / extractor.profile.sample_rate
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(3.6, 1.3))
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.13, right=0.97, bottom=0.3, top=0.9)
        ax = fig.add_subplot()
        ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, mel.shape[0]))
        ax.set(xlabel="s", ylabel="mel")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100, metadata=_PNG_METADATA)
    return path
