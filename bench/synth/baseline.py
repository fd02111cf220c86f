"""A non-learned speaker-verification baseline for sanity-checking a corpus's difficulty.

Each recording becomes the mean and standard deviation of its MFCCs over voiced frames (c0
dropped, so level does not count); embeddings are standardised over the evaluation set and
compared by cosine.  On a useful synthetic corpus this gives an EER clearly above 5 % (not
trivial) and clearly below 40 % (not impossible).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.errors import BenchError

SR = 16000
N_FFT, WIN, HOP, N_MELS, N_MFCC = 512, 400, 160, 40, 20
METHOD = "MFCC c1-19 mean+std, standardised, cosine"  # the name reports and docs give this baseline


def _mel_matrix() -> np.ndarray:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(20), mel(7600), N_MELS + 2))
    freqs = np.fft.rfftfreq(N_FFT, 1 / SR)
    fb = np.zeros((N_MELS, len(freqs)))
    for i in range(N_MELS):
        lo, c, hi = edges[i : i + 3]
        fb[i] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return fb


def _dct_matrix() -> np.ndarray:
    n = np.arange(N_MELS)
    k = np.arange(N_MFCC)[:, None]
    return np.cos(np.pi / N_MELS * (n + 0.5) * k) * np.sqrt(2 / N_MELS)


_MEL, _DCT = _mel_matrix(), _dct_matrix()


def mfcc(x: np.ndarray) -> np.ndarray:
    """[frames, N_MFCC] MFCCs of 16 kHz audio (25 ms Hann windows every 10 ms)."""
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    n = 1 + (len(x) - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * np.hanning(WIN)
    power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2
    logmel = np.log(power @ _MEL.T + 1e-8)
    return logmel @ _DCT.T


def embed(x: np.ndarray) -> np.ndarray:
    """Mean and std of c1..c19 over the loudest 70 % of frames (a crude voice-activity gate)."""
    c = mfcc(x.astype(np.float64))
    keep = c[:, 0] >= np.quantile(c[:, 0], 0.3)
    c = c[keep, 1:]
    return np.concatenate([c.mean(0), c.std(0)])


def _read_list(path: Path) -> list[list[str]]:
    if not path.exists():
        raise BenchError("list file missing; is this a complete corpus?", path)
    from bench.textio import read_lines

    return [line.split() for line in read_lines(path, "list file") if line.strip()]


def eer_percent(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate in percent, via the project's metrics module when it is available."""
    try:
        from bench.metrics import compute_metrics
    except ImportError:
        return _eer_percent(scores, labels)
    return float(compute_metrics(scores, labels)["eer"])


def _eer_percent(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    lab = labels[order].astype(bool)
    n_t, n_n = lab.sum(), (~lab).sum()
    # Accept the top-k trials for each k: misses and false alarms at every threshold.
    fa = np.concatenate([[0], np.cumsum(~lab)]) / n_n
    miss = 1 - np.concatenate([[0], np.cumsum(lab)]) / n_t
    i = int(np.argmin(np.abs(miss - fa)))
    return float(100 * (miss[i] + fa[i]) / 2)


def run_baseline(corpus: str | Path, progress=None, return_scores: bool = False) -> dict:
    """Score ``eval/lists/trials.lst`` with the MFCC baseline; returns EER (%) and trial counts
    (and, with ``return_scores``, the ``scores`` and boolean ``labels`` arrays in trial order)."""
    import soundfile as sf

    root = Path(corpus) / "eval"
    lists = root / "lists"
    enroll = {row[0]: row[1] for row in _read_list(lists / "enroll.lst")}
    trials = _read_list(lists / "trials.lst")
    needed = sorted(set(enroll.values()) | {row[1] for row in trials})
    emb = {}
    for i, rel in enumerate(needed):
        path = root / (rel[:-4] + ".flac" if rel.endswith(".wav") else rel)
        try:
            x, sr = sf.read(path, dtype="float32")
        except (OSError, RuntimeError) as e:
            raise BenchError(f"cannot read audio ({e})", path) from e
        emb[rel] = embed(x)
        if progress:
            progress(i + 1, len(needed))
    keys = list(emb)
    mat = np.stack([emb[k] for k in keys])
    mat = (mat - mat.mean(0)) / (mat.std(0) + 1e-9)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    row = {k: i for i, k in enumerate(keys)}
    scores = np.array([mat[row[enroll[t[0]]]] @ mat[row[t[1]]] for t in trials])
    labels = np.array([t[2] == "1" for t in trials])
    out = {
        "eer": eer_percent(scores, labels),
        "trials": len(trials),
        "target_trials": int(labels.sum()),
        "method": METHOD,
    }
    if return_scores:
        out.update(scores=scores, labels=labels)
    return out
