"""Speech presence with Silero VAD: the share of a clip that is speech.

The `silero-vad` wheel ships its TorchScript model (silero_vad/data), so this loads from the
installed package and never downloads anything. Audio is resampled to 16 kHz (soxr) and run on
one intra-op thread: the same clip gives the same share on every run.
"""

from __future__ import annotations

import numpy as np

VAD_RATE = 16000


class SpeechDetector:
    def __init__(self) -> None:
        import torch
        from silero_vad import load_silero_vad

        torch.set_num_threads(1)
        self.torch = torch
        self.model = load_silero_vad(onnx=False)

    def __call__(self, audio: np.ndarray, rate: int) -> float:
        """Seconds of speech / seconds of audio."""
        import soxr
        from silero_vad import get_speech_timestamps

        x = np.asarray(audio, dtype=np.float32)
        if rate != VAD_RATE:
            x = soxr.resample(x, rate, VAD_RATE, quality="HQ").astype(np.float32)
        if x.size == 0:
            return 0.0
        self.model.reset_states()
        with self.torch.inference_mode():
            spans = get_speech_timestamps(self.torch.from_numpy(x), self.model, sampling_rate=VAD_RATE)
        return float(sum(span["end"] - span["start"] for span in spans) / x.size)
