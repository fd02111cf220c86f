"""Multi-view augmentation: each training crop becomes V independently augmented views.

View types live in the :data:`AUGMENTATIONS` registry (name -> class + config dataclass with its
SNR ranges), so a new view type is one class plus one ``register`` line:

=========  ===================================================================  ====================
``clean``  the crop unchanged                                                   --
``reverb`` convolution with a random room impulse response                      RIRS_NOISES folder
``noise``  MUSAN ``noise/`` at 0-15 dB SNR                                      MUSAN folder
``music``  MUSAN ``music/`` at 5-15 dB SNR                                      MUSAN folder
``babble`` 3-7 MUSAN ``speech/`` talkers summed, at 13-20 dB SNR                MUSAN folder
=========  ===================================================================  ====================

SNR is defined against the whole crop: ``10 log10(mean(clean^2) / mean(added^2))``. Missing
noise/RIR folders are reported when the augmenter is built (at loader start-up), never mid-epoch.

Each view is a random ``draw`` (in the loader worker: choices, plus decoding the noise segment or
RIR they pick) and a deterministic ``apply``. ``data.augment_on`` says where ``apply`` runs:
``"loader"`` (per utterance, numpy, in the worker) or ``"device"`` (batched torch on the training
device, :mod:`bench.data.ondevice`); the same draws give the same views either way, to float32
rounding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config import DataConfig
from bench.data.audio import audio_info, read_audio, resample_poly
from bench.data.cache import cached_read
from bench.data.corpus import audio_files
from bench.errors import BenchError
from bench.registry import Registry

AUGMENTATIONS = Registry("view type")
RIR_CACHE = 512  # decoded RIRs kept per worker; the simulated set has 60k short files


@functools.lru_cache(maxsize=16)
def _listing(folder: Path) -> tuple[Path, ...]:
    # the loader is rebuilt every epoch; RIRS_NOISES alone has 60k files to walk
    return tuple(audio_files(folder))


class SoundBank:
    """Audio files of one folder, read as random segments of a requested length."""

    def __init__(self, folder: Path, sample_rate: int, what: str, exclude: str = ""):
        if not folder.is_dir():
            raise BenchError(f"{what} folder not found (needed by the configured view types)", path=folder)
        self.files = [p for p in _listing(folder) if not (exclude and exclude in p.name)]
        if not self.files:
            raise BenchError(f"no audio files in the {what} folder", path=folder)
        self.folder = folder
        self.sample_rate = sample_rate
        self._frames: dict[int, int] = {}
        self._cache: dict[int, np.ndarray] = {}

    def frames(self, i: int) -> int:
        if i not in self._frames:
            info = audio_info(self.files[i])
            self._frames[i] = int(info.frames * self.sample_rate / info.sample_rate)
        return self._frames[i]

    def segment(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """float32 ``[n]`` from a random file at a random offset, repeat-padded when the file is short."""
        i = int(rng.integers(len(self.files)))
        total = self.frames(i)
        if total > n:
            off = int(rng.integers(0, total - n + 1))
            x = cached_read(self.files[i], self.sample_rate, offset=off, frames=n)
        else:
            x = cached_read(self.files[i], self.sample_rate)
        return repeat_pad(x, n)

    def whole(self, rng: np.random.Generator) -> np.ndarray:
        """A random file decoded whole (RIRs), cached per process."""
        i = int(rng.integers(len(self.files)))
        if i not in self._cache:
            if len(self._cache) >= RIR_CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = read_audio(self.files[i], self.sample_rate)
        return self._cache[i]


def repeat_pad(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` tiled (or cut) to exactly ``n`` samples; a short utterance repeats rather than zero-pads."""
    if len(x) >= n:
        return x[:n]
    reps = -(-n // len(x))
    return np.tile(x, reps)[:n]


def add_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g * noise`` with ``g`` chosen so the power ratio is exactly ``snr_db``.

    A silent crop or silent noise has no defined SNR; the crop is returned unchanged.
    """
    ps = float(np.mean(clean.astype(np.float64) ** 2))
    pn = float(np.mean(noise.astype(np.float64) ** 2))
    if ps <= 0.0 or pn <= 0.0:
        return clean.copy()
    g = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (clean + g * noise).astype(np.float32)


@dataclass
class Banks:
    """Noise and RIR sources shared by the view types (only those some view needs are built)."""

    noise: SoundBank | None = None
    music: SoundBank | None = None
    speech: SoundBank | None = None
    rir: SoundBank | None = None

    def need(self, name: str) -> SoundBank:
        bank = getattr(self, name)
        assert bank is not None, f"bank '{name}' was not built"  # MultiViewAugmenter builds every needed bank
        return bank


@dataclass
class CleanConfig:
    pass


@dataclass
class SnrConfig:
    snr_min: float = 0.0
    snr_max: float = 15.0

    def validate(self) -> None:
        if self.snr_min > self.snr_max:
            raise BenchError(f"snr_min {self.snr_min} > snr_max {self.snr_max}")


@dataclass
class MusicConfig(SnrConfig):
    snr_min: float = 5.0
    snr_max: float = 15.0


@dataclass
class BabbleConfig(SnrConfig):
    snr_min: float = 13.0
    snr_max: float = 20.0
    talkers_min: int = 3
    talkers_max: int = 7


@dataclass
class ReverbConfig:
    pass


class View:
    """One view type, split into a random ``draw`` and a deterministic ``apply``.

    ``draw(n, rng) -> params`` makes every random choice for a crop of ``n`` samples and decodes the
    sources it picked (noise segment, RIR); ``apply(wave[T], params) -> wave[T]`` float32 runs on one
    crop in numpy (``data.augment_on="loader"``); ``apply_batch(crops[B, T], params) -> [B, T]`` runs
    the same arithmetic batched in torch on the training device (``data.augment_on="device"``) on
    ``collate``'d params. ``needs`` names the banks ``draw`` reads.
    """

    needs: tuple[str, ...] = ()

    def __init__(self, cfg, banks: Banks):
        self.cfg = cfg
        self.banks = banks

    def draw(self, n: int, rng: np.random.Generator) -> dict[str, Any]:
        return {}

    def apply(self, wave: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(wave, self.draw(len(wave), rng))

    @staticmethod
    def collate(params: list[dict[str, Any]], n: int) -> dict[str, torch.Tensor]:
        """The draws of a batch as tensors (``[B, ...]`` each)."""
        return {}

    @staticmethod
    def apply_batch(crops: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


@AUGMENTATIONS.register("clean", CleanConfig, "the crop unchanged")
class Clean(View):
    def apply(self, wave, params):
        return wave.copy()

    @staticmethod
    def apply_batch(crops, params):
        return crops


class Additive(View):
    """A noise signal added at a drawn SNR; ``draw`` returns ``{"noise": float32[n], "snr": dB}``."""

    @staticmethod
    def collate(params, n):
        return {"noise": torch.from_numpy(np.stack([p["noise"] for p in params])),
                "snr": torch.tensor([p["snr"] for p in params], dtype=torch.float32)}

    def apply(self, wave, params):
        return add_at_snr(wave, params["noise"], params["snr"])

    @staticmethod
    def apply_batch(crops, params):
        return add_at_snr_batch(crops, params["noise"], params["snr"])


@AUGMENTATIONS.register("noise", SnrConfig, "MUSAN noise at 0-15 dB SNR")
class Noise(Additive):
    needs = ("noise",)
    bank = "noise"

    def draw(self, n, rng):
        snr = float(rng.uniform(self.cfg.snr_min, self.cfg.snr_max))
        return {"noise": self.banks.need(self.bank).segment(rng, n), "snr": snr}


@AUGMENTATIONS.register("music", MusicConfig, "MUSAN music at 5-15 dB SNR")
class Music(Noise):
    needs = ("music",)
    bank = "music"


@AUGMENTATIONS.register("babble", BabbleConfig, "3-7 MUSAN speech talkers at 13-20 dB SNR")
class Babble(Additive):
    needs = ("speech",)

    def draw(self, n, rng):
        k = int(rng.integers(self.cfg.talkers_min, self.cfg.talkers_max + 1))
        bank = self.banks.need("speech")
        mix = np.zeros(n, dtype=np.float64)
        for _ in range(k):
            s = bank.segment(rng, n).astype(np.float64)
            # equal-power talkers, so no single loud file dominates the babble
            mix += s / max(np.sqrt(np.mean(s**2)), 1e-8)
        # the talkers are summed here even for augment_on="device": O(kT) work, and k times less
        # audio to send from the loader worker than the separate talkers
        return {"noise": mix.astype(np.float32), "snr": float(rng.uniform(self.cfg.snr_min, self.cfg.snr_max))}


@AUGMENTATIONS.register("reverb", ReverbConfig, "convolution with a RIRS_NOISES room impulse response")
class Reverb(View):
    """Convolution with a unit-energy RIR, aligned at its direct path (the largest tap).

    ``draw`` returns ``{"rir": float32[L]}`` as decoded (normalised and aligned in ``apply``).
    """

    needs = ("rir",)

    def draw(self, n, rng):
        return {"rir": self.banks.need("rir").whole(rng)}

    def apply(self, wave, params):
        rir = params["rir"].astype(np.float64)
        energy = np.sqrt(np.sum(rir**2))
        if energy <= 0:
            return wave.copy()
        # start at the direct path so the reverberant view stays time-aligned with the clean one
        peak = int(np.argmax(np.abs(rir)))
        out = fft_convolve(wave.astype(np.float64), rir / energy)[peak: peak + len(wave)]
        return repeat_pad(out, len(wave)).astype(np.float32)

    @staticmethod
    def collate(params, n):
        longest = max(len(p["rir"]) for p in params)
        # zero taps change nothing; padding to a 2^a 3^b 5^c FFT size keeps the batched FFT fast
        size = fast_length(n + longest - 1) - n + 1
        rirs = torch.zeros(len(params), size)
        for i, p in enumerate(params):
            rirs[i, : len(p["rir"])] = torch.from_numpy(p["rir"])
        return {"rir": rirs}

    @staticmethod
    def apply_batch(crops, params):
        from torchaudio.functional import fftconvolve

        rir = params["rir"]
        energy = rir.pow(2).sum(-1, keepdim=True).sqrt()
        peak = rir.abs().argmax(-1, keepdim=True)  # first maximum, like np.argmax
        full = fftconvolve(crops, rir / energy.clamp_min(torch.finfo(rir.dtype).tiny))  # [B, T + L - 1]
        idx = peak + torch.arange(crops.shape[-1], device=crops.device)
        return torch.where(energy > 0, full.gather(-1, idx), crops)


def add_at_snr_batch(crops: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """Batched :func:`add_at_snr`: ``crops[B, T] + g * noise[B, T]`` at ``snr_db[B]`` (whole-crop powers).

    ``torchaudio.functional.add_noise`` does the scaling; rows with a silent crop or silent noise
    (no defined SNR) are returned unchanged, as in the per-utterance path.
    """
    from torchaudio.functional import add_noise

    ok = (crops.pow(2).sum(-1, keepdim=True) > 0) & (noise.pow(2).sum(-1, keepdim=True) > 0)
    return torch.where(ok, add_noise(crops, noise, snr_db), crops)


def fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFTs of such sizes are fast, and much shorter than the next power of 2."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full linear convolution ``[len(x)+len(h)-1]`` via real FFTs (numpy only: importing
    scipy.signal costs seconds in every fresh worker)."""
    n = len(x) + len(h) - 1
    size = fast_length(n)
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


def speed_perturb(read, n: int, rng: np.random.Generator, factors=(0.9, 1.0, 1.1)) -> np.ndarray:
    """Speed perturbation of a crop: ``read(m)`` returns ``m`` samples; the result has ``n``.

    A factor ``f`` reads ``ceil(n*f)`` samples and resamples them to ``n`` (pitch and tempo change).
    """
    f = float(factors[int(rng.integers(len(factors)))])
    if f == 1.0:
        return read(n)
    m = int(np.ceil(n * f))
    x = read(m)
    return repeat_pad(resample_poly(x, int(round(f * 10)), 10), n)


def _find_rir_folders(rirs: Path) -> list[Path]:
    base = rirs / "RIRS_NOISES" if (rirs / "RIRS_NOISES").is_dir() else rirs
    return [base / n for n in ("simulated_rirs", "real_rirs_isotropic_noises") if (base / n).is_dir()]


class MultiViewAugmenter:
    """``aug(crop[T], rng) -> views[V, T]`` float32, one independent augmentation per view type.

    ``data_cfg.view_types`` is cycled when ``data_cfg.views`` is longer. Folders default to
    ``<root>/musan`` and ``<root>/rirs``.

    Raises:
        BenchError: unknown view type, or a missing/empty folder a view type needs.
    """

    def __init__(self, data_cfg: DataConfig, params: dict[str, dict] | None = None):
        if not data_cfg.view_types:
            raise BenchError("data.view_types is empty")
        self.view_types = [data_cfg.view_types[i % len(data_cfg.view_types)] for i in range(data_cfg.views)]
        entries = [AUGMENTATIONS.get(v) for v in self.view_types]
        needs = {n for e in entries for n in e.cls.needs}
        root = Path(data_cfg.root)
        musan = Path(data_cfg.musan) if data_cfg.musan else root / "musan"
        rirs = Path(data_cfg.rirs) if data_cfg.rirs else root / "rirs"
        sr = data_cfg.sample_rate
        banks = Banks()
        for kind in ("noise", "music", "speech"):
            if kind in needs:
                if not musan.is_dir():
                    raise BenchError("MUSAN folder not found (set data.musan, or drop noise/music/babble "
                                     "from data.view_types)", path=musan)
                setattr(banks, kind, SoundBank(musan / kind, sr, f"MUSAN {kind}"))
        if "rir" in needs:
            if not rirs.is_dir():
                raise BenchError("RIR folder not found (set data.rirs, or drop reverb from data.view_types)", path=rirs)
            folders = _find_rir_folders(rirs)
            if not folders:
                raise BenchError("no simulated_rirs/ or real_rirs_isotropic_noises/ in the RIR folder", path=rirs)
            bank = SoundBank(folders[0], sr, "RIR", exclude="noise")
            for extra in folders[1:]:
                bank.files += [p for p in _listing(extra) if "noise" not in p.name]
            banks.rir = bank
        self.banks = banks
        params = params or {}
        self.views = [AUGMENTATIONS.build(v, params.get(v, {}), banks) for v in self.view_types]

    def __call__(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(crop, self.draw(len(crop), rng))

    def draw(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """Every view's random parameters for a crop of ``n`` samples, in view order (one generator)."""
        return [view.draw(n, rng) for view in self.views]

    def apply(self, crop: np.ndarray, params: list[dict[str, Any]]) -> np.ndarray:
        """``views[V, T]`` float32 from ``draw``'s parameters, per utterance in numpy."""
        return np.stack([view.apply(crop, p) for view, p in zip(self.views, params)]).astype(np.float32, copy=False)
