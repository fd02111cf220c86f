"""Waveform -> log-mel filterbank frontend, batched on the model's device, plus SpecAugment.

The filterbank follows Kaldi's ``compute-fbank-feats`` conventions (and hence
``torchaudio.compliance.kaldi.fbank``) with ``dither=0``: ``snip_edges=True`` framing, per-frame DC
removal, pre-emphasis 0.97 inside each frame, povey window, FFT size rounded up to a power of two
(512 at 25 ms / 16 kHz), power spectrum, Kaldi's mel scale ``1127 ln(1 + f / 700)`` with triangles
from 20 Hz to Nyquist, and ``log(max(x, float32 eps))``. Every step is local to one frame, so a frame
that lies wholly inside an utterance has the same value whether or not the batch is padded; only the
mean normalisation is global, and it is masked to the valid frames.

Example:
    >>> import torch
    >>> from models.config import FrontendConfig
    >>> fb = Fbank(FrontendConfig())
    >>> feats, mask = fb(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> feats.shape, mask.sum(1).tolist()
    (torch.Size([2, 80, 98]), [98, 48])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.errors import BenchError
from models.config import FrontendConfig

SAMPLE_RATE = 16000
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
# Kaldi floors the mel energies at float32 machine epsilon before the log.
LOG_FLOOR = float(torch.finfo(torch.float32).eps)


def validate_frontend(cfg: FrontendConfig) -> None:
    """Range checks for a FrontendConfig (the dataclass is owned by bench.config)."""
    if cfg.n_mels < 1:
        raise BenchError(f"model.frontend.n_mels must be >= 1, got {cfg.n_mels}")
    if cfg.win_ms <= 0 or cfg.hop_ms <= 0:
        raise BenchError(f"model.frontend.win_ms and hop_ms must be > 0, got {cfg.win_ms}, {cfg.hop_ms}")
    for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
        if getattr(cfg, name) < 0:
            raise BenchError(f"model.frontend.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.freq_mask_width >= cfg.n_mels:
        raise BenchError(f"model.frontend.freq_mask_width ({cfg.freq_mask_width}) must be < n_mels ({cfg.n_mels})")


def _mel(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def kaldi_mel_banks(
    n_mels: int, n_fft: int, sample_rate: int = SAMPLE_RATE, low_freq: float = LOW_FREQ
) -> torch.Tensor:
    """Triangular mel weights [n_fft // 2 + 1, n_mels], triangles spaced evenly on Kaldi's mel scale.

    The Nyquist bin gets zero weight, as in Kaldi (its banks cover ``n_fft // 2`` bins).
    """
    n_bins = n_fft // 2
    freqs = torch.arange(n_bins + 1, dtype=torch.float64) * (sample_rate / n_fft)
    mel = _mel(freqs)[:, None]  # [n_bins + 1, 1]
    lo, hi = (
        _mel(torch.tensor(low_freq, dtype=torch.float64)),
        _mel(torch.tensor(sample_rate / 2.0, dtype=torch.float64)),
    )
    delta = (hi - lo) / (n_mels + 1)
    left = lo + delta * torch.arange(n_mels, dtype=torch.float64)[None, :]
    center, right = left + delta, left + 2 * delta
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    w = torch.clamp(torch.minimum(up, down), min=0.0)
    w[n_bins] = 0.0
    return w.float()


def num_frames(lengths: torch.Tensor, win: int, hop: int) -> torch.Tensor:
    """Frames per utterance under snip_edges framing; at least 1 (short inputs are zero-padded)."""
    return torch.clamp(torch.div(lengths - win, hop, rounding_mode="floor") + 1, min=1)


class Fbank(nn.Module):
    """Log-mel filterbank with masked per-utterance mean normalisation and train-time SpecAugment.

    ``forward(wave[B, T] float, lengths[B] int64 | None) -> (feats[B, n_mels, N] float32, mask[B, N] bool | None)``
    with ``N = 1 + (T - win) // hop``. ``mask`` is None when ``lengths`` is None (all frames valid).
    Runs in float32 even under autocast: log-mel of fp16 power spectra loses the quiet bins.
    """

    # buffers registered in __init__ (declared so that type checkers see tensors, not Module attributes)
    window: torch.Tensor
    mel_banks: torch.Tensor

    def __init__(self, cfg: FrontendConfig | None = None, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.cfg = cfg or FrontendConfig()
        validate_frontend(self.cfg)
        self.win = int(round(sample_rate * self.cfg.win_ms / 1000.0))
        self.hop = int(round(sample_rate * self.cfg.hop_ms / 1000.0))
        self.n_fft = 1 << math.ceil(math.log2(self.win))
        self.n_mels = self.cfg.n_mels
        window = torch.hann_window(self.win, periodic=False, dtype=torch.float64).pow(0.85).float()
        # Non-persistent: they are derived from the config, so checkpoints stay frontend-agnostic.
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_banks", kaldi_mel_banks(self.n_mels, self.n_fft, sample_rate), persistent=False)

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            feats, mask = self._fbank(wave.float(), lengths)
            if self.cfg.mean_norm:
                feats = masked_mean_norm(feats, mask)
            if mask is not None:
                # Zeroed padding makes the first convolution of any backbone see what it would see
                # at the end of an unpadded utterance (zero padding).
                feats = feats * mask[:, None, :]
            if self.training and self.cfg.specaug:
                feats = spec_augment(feats, mask, self.cfg)
        return feats, mask

    def _fbank(self, wave: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if wave.dim() != 2:
            raise ValueError(f"expected wave[B, T], got shape {tuple(wave.shape)}")
        t = wave.shape[1]
        if lengths is not None:
            lengths = lengths.to(wave.device)
            # Samples past an utterance's end may hold anything; zeroing them makes a short
            # utterance's single zero-padded frame independent of its batch neighbours.
            wave = wave * (torch.arange(t, device=wave.device)[None, :] < lengths[:, None])
        if t < self.win:
            wave = nn.functional.pad(wave, (0, self.win - t))
        frames = wave.unfold(1, self.win, self.hop)  # [B, N, win]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - PREEMPHASIS * prev) * self.window
        spec = torch.fft.rfft(frames, n=self.n_fft)
        # re^2 + im^2, not |z|^2: abs() takes a square root only to square it (about 2x slower on CPU)
        spec = spec.real.square() + spec.imag.square()  # [B, N, n_fft/2 + 1]
        mel = torch.matmul(spec, self.mel_banks).clamp_min(LOG_FLOOR).log()  # [B, N, n_mels]
        feats = mel.transpose(1, 2)
        mask = None
        if lengths is not None:
            n = num_frames(lengths, self.win, self.hop)
            mask = torch.arange(feats.shape[-1], device=wave.device)[None, :] < n[:, None]
        return feats, mask

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames per utterance for sample ``lengths``."""
        return num_frames(lengths, self.win, self.hop)


def masked_mean_norm(feats: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Subtract each utterance's mean over its valid frames. feats [B, F, N], mask [B, N] bool."""
    if mask is None:
        return feats - feats.mean(dim=-1, keepdim=True)
    m = mask[:, None, :].to(feats.dtype)
    mean = (feats * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1.0)
    return feats - mean


def _band_mask(size: int, count: int, max_width: int, limit: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[B, size] bool: ``count`` random bands of width U{0..max_width} starting inside [0, limit)."""
    b = limit.shape[0]
    pos = torch.arange(size, device=device)[None, :]
    out = torch.zeros(b, size, dtype=torch.bool, device=device)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (b, 1), device=device)
        start = (torch.rand(b, 1, device=device) * (limit[:, None] - width).clamp_min(1)).long()
        out |= (pos >= start) & (pos < start + width)
    return out


def spec_augment(feats: torch.Tensor, mask: torch.Tensor | None, cfg: FrontendConfig) -> torch.Tensor:
    """Zero random frequency bands and time spans per utterance (zero = the normalised mean).

    Time masks are drawn inside each utterance's valid frames. Vectorised over the batch (no
    per-utterance Python loop), so it stays cheap on GPU and traceable by torch.compile.
    """
    b, f, n = feats.shape
    dev = feats.device
    drop = torch.zeros(b, f, n, dtype=torch.bool, device=dev)
    if cfg.freq_masks and cfg.freq_mask_width:
        drop |= _band_mask(f, cfg.freq_masks, cfg.freq_mask_width, torch.full((b,), f, device=dev), dev)[:, :, None]
    if cfg.time_masks and cfg.time_mask_width:
        valid = mask.sum(-1) if mask is not None else torch.full((b,), n, device=dev)
        drop |= _band_mask(n, cfg.time_masks, cfg.time_mask_width, valid, dev)[:, None, :]
    return feats.masked_fill(drop, 0.0)
