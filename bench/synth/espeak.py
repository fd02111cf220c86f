"""A ctypes driver for libespeak-ng: text + voice variant -> 16 kHz float32 waveform.

The library keeps process-global state (one voice, one callback, one output buffer), so an
:class:`Espeak` instance is a per-process singleton: use processes, never threads, for
parallel synthesis.  Voice variants are written as files into a private overlay of the
espeak-ng data folder, because the library only looks for variants in ``<data>/voices/!v``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing.util as mp_util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.errors import BenchError

OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE = 1, 2, 3, 4
SAMPLE_RATE = 16000

INSTALL_HINT = (
    "the eSpeak NG speech synthesiser could not be loaded. Install it with "
    "'pip install espeakng-loader' (x86_64 Linux wheel, bundles libespeak-ng and its data), or on other "
    "platforms with the system packages 'libespeak-ng1' and 'espeak-ng-data' "
    "(Debian/Ubuntu: apt install libespeak-ng1 espeak-ng-data; macOS: brew install espeak-ng)"
)

_SYSTEM_DATA_DIRS = [
    "/usr/lib/x86_64-linux-gnu/espeak-ng-data",
    "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
    "/usr/share/espeak-ng-data",
    "/usr/local/share/espeak-ng-data",
    "/opt/homebrew/share/espeak-ng-data",
]

# Wavegen keeps function-static state across utterances (gain control after clipping, the glottal
# cycle counter that paces roughness, the flutter phase).  The public API cannot reset it, so an
# utterance would depend on what the process synthesised before.  When the library ships its
# symbol table (the espeakng-loader wheel does) these are located and reset before each call.
_STATIC_RESETS = {"agc": 256, "cycle_count": 0, "Flutter_ix": 0}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def locate_espeak() -> tuple[str, str]:
    """(library path, data folder) of an installed libespeak-ng; BenchError with install advice if none."""
    try:
        import espeakng_loader

        lib, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        if Path(lib).exists() and Path(data, "phontab").exists():
            return lib, data
    except (ImportError, RuntimeError):
        pass
    lib = ctypes.util.find_library("espeak-ng")
    if lib:
        for d in _SYSTEM_DATA_DIRS:
            if Path(d, "phontab").exists():
                return lib, d
    raise BenchError(INSTALL_HINT)


OVERLAY_PREFIX = "bench-espeak-"


OWNER_LOCK = ".owner"


def sweep_stale_overlays(root: str | Path | None = None) -> list[Path]:
    """Remove the data overlays (``<tmp>/bench-espeak-<pid>-*``) of engines whose process is gone.

    An engine's overlay is removed when its process exits, but not after ``kill -9`` or a native
    crash; the next engine sweeps those. Each engine holds an exclusive ``flock`` on its overlay's
    ``.owner`` file for its life and the kernel drops it when the process dies, so a lock that can
    be taken marks an overlay whose owner is gone, whatever PID namespace or host name it had (a
    pid is not proof: another namespace sharing the temp folder reuses it). A folder without that
    file (another program's, or one being created) is left alone. Returns the folders removed.
    """
    import fcntl

    removed = []
    for d in Path(root or tempfile.gettempdir()).glob(f"{OVERLAY_PREFIX}*"):
        try:
            fd = os.open(d / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its engine is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        finally:
            os.close(fd)
    return removed


def _hold_owner_lock(overlay: Path) -> int:
    """Create and lock ``overlay/.owner`` (see :func:`sweep_stale_overlays`); the fd stays open for
    the process's life (not inherited by exec'd programs)."""
    import fcntl

    fd = os.open(overlay / OWNER_LOCK, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


class Espeak:
    """The process's eSpeak NG engine.  Construct once per process (see :func:`engine`)."""

    def __init__(self) -> None:
        lib_path, data_path = locate_espeak()
        try:
            self._lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise BenchError(f"{INSTALL_HINT} ({e})") from e
        sweep_stale_overlays()
        # Locked under a name the sweep does not match, then renamed into place (atomic): a sweep
        # running beside this one never sees the overlay unlocked (it emptied one being populated).
        hidden = Path(tempfile.mkdtemp(prefix=f".{OVERLAY_PREFIX}{os.getpid()}-"))
        self._owner = _hold_owner_lock(hidden)
        self._overlay = hidden.with_name(hidden.name[1:])
        hidden.rename(self._overlay)
        # multiprocessing's finaliser (not atexit) also runs when a pool worker exits normally, so
        # every worker process removes its own overlay.
        self._cleanup = mp_util.Finalize(
            self, shutil.rmtree, args=(str(self._overlay),), kwargs={"ignore_errors": True}, exitpriority=0
        )
        self._variants = _make_overlay(Path(data_path), self._overlay)
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes frees the trampoline if the Python object is collected.
        self._cb = _CALLBACK(self._collect)
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.native_rate = lib.espeak_Initialize(
            OUTPUT_SYNCHRONOUS, 200, str(self._overlay).encode(), INITIALIZE_DONT_EXIT
        )
        if self.native_rate <= 0:
            raise BenchError(f"{INSTALL_HINT} (espeak_Initialize failed with data folder {data_path})")
        lib.espeak_SetSynthCallback(self._cb)
        # eSpeak's noise sources draw from its private generator and from libc rand(); reseeding
        # both per call makes a waveform depend only on its own inputs, not on what this process
        # synthesised before.  Older libraries lack the private seed call.
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        libc_name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(libc_name) if libc_name else None
        self._counter = 0
        self._statics = _locate_statics(lib_path, self._lib)

    def _collect(self, wav, numsamples, events) -> int:
        if numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def synth(
        self, text: str, language: str, variant: str, rate: int, pitch: int, prange: int, rand_seed: int = 0
    ) -> np.ndarray:
        """Speak ``text`` with language voice ``language`` and the variant file text ``variant``.

        ``rate`` is words per minute, ``pitch``/``prange`` are eSpeak's 0-100 scales relative to the
        variant.  Returns float32 mono audio at 16 kHz in [-1, 1].  Identical arguments give
        identical samples.
        """
        from bench.procs import interrupt_after

        with interrupt_after():  # a Ctrl-C inside the audio callback would drop a chunk unnoticed
            return self._synth(text, language, variant, rate, pitch, prange, rand_seed)

    def _synth(
        self, text: str, language: str, variant: str, rate: int, pitch: int, prange: int, rand_seed: int
    ) -> np.ndarray:
        self._counter += 1
        name = f"v{self._counter}"
        vfile = self._variants / name
        vfile.write_text(variant)
        try:
            if self._lib.espeak_SetVoiceByName(f"{language}+{name}".encode()) != 0:
                raise BenchError(f"eSpeak NG has no voice '{language}'")
            for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, prange), (PARAM_VOLUME, 25)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            if self._set_seed is not None:
                self._set_seed(ctypes.c_long(rand_seed & 0x7FFFFFFF))
            if self._libc is not None:
                self._libc.srand(ctypes.c_uint(rand_seed & 0x7FFFFFFF))
            for addr, value in self._statics:
                ctypes.c_int.from_address(addr).value = value
            self._chunks = []
            data = text.encode("utf-8")
            self._lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
        finally:
            vfile.unlink(missing_ok=True)
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        self._chunks = []
        return _resample(pcm.astype(np.float32) / 32768.0, self.native_rate, SAMPLE_RATE)

    def close(self) -> None:
        self._cleanup()


def _locate_statics(lib_path: str, lib: ctypes.CDLL) -> list[tuple[int, int]]:
    """(address, reset value) of the wavegen statics in the loaded library; empty when the library
    is stripped or not an ELF64 file, in which case output is reproducible only per process history."""
    import struct

    try:
        blob = Path(lib_path).read_bytes()
        if blob[:4] != b"\x7fELF" or blob[4] != 2:
            return []
        (shoff,) = struct.unpack_from("<Q", blob, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", blob, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize) for i in range(shnum)]
        symtab = next((sec for sec in sections if sec[1] == 2), None)  # SHT_SYMTAB
        if symtab is None:
            return []
        strtab = sections[symtab[6]]
        names: dict[str, int] = {}
        for off in range(symtab[4], symtab[4] + symtab[5], 24):
            st_name, _, _, _, st_value, _ = struct.unpack_from("<IBBHQQ", blob, off)
            start = strtab[4] + st_name
            name = blob[start : blob.index(b"\0", start)].decode("ascii", "replace")
            names[name.split(".")[0] if "." in name else name] = st_value
        base = ctypes.cast(lib.espeak_Synth, ctypes.c_void_p).value - names["espeak_Synth"]
        found = [(base + names[n], v) for n, v in _STATIC_RESETS.items() if n in names]
        # Sanity check before ever writing: the gain control must read as a plausible value.
        agc = next((ctypes.c_int.from_address(a).value for a, v in found if v == 256), None)
        return found if agc is not None and 0 < agc <= 256 else []
    except (OSError, KeyError, ValueError, struct.error, StopIteration):
        return []


def _make_overlay(data: Path, overlay: Path) -> Path:
    """Mirror ``data`` into ``overlay`` with symlinks, except a writable ``voices/!v``; return that folder."""
    for entry in data.iterdir():
        if entry.name != "voices":
            (overlay / entry.name).symlink_to(entry)
    voices = overlay / "voices"
    voices.mkdir()
    for entry in (data / "voices").iterdir():
        if entry.name != "!v":
            (voices / entry.name).symlink_to(entry)
    variants = voices / "!v"
    variants.mkdir()
    return variants


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Band-limited resampling by FFT truncation/zero-padding (exact for a whole utterance that
    starts and ends in silence, as synthesised speech does; avoids importing scipy.signal)."""
    if src == dst or x.size == 0:
        return x.astype(np.float32)
    from math import gcd

    g = gcd(src, dst)
    up, down = dst // g, src // g
    # Zero-pad to down * 2^j samples: both FFT sizes are then smooth and the ratio exact.
    blocks = 1 << max(int(-(-len(x) // down) - 1).bit_length(), 0)
    n, m = down * blocks, up * blocks
    spec = np.fft.rfft(x, n)
    out = np.zeros(m // 2 + 1, dtype=complex)
    k = min(len(spec), len(out))
    out[:k] = spec[:k]
    y = np.fft.irfft(out, m) * (m / n)
    return y[: round(len(x) * up / down)].astype(np.float32)


_ENGINE: Espeak | None = None
_ENGINE_PID: int | None = None


def engine() -> Espeak:
    """The process-wide engine, created on first use and kept for the life of the process.

    The library is initialised at most once per process image: ``espeak_Initialize`` on a library
    that is already initialised (a second engine, or a child forked from a process that had one)
    reloads the phoneme data under live tables, and generation then crashed at random ("Invalid
    instruction ... for phoneme", a dead pool worker).  So a process that has loaded eSpeak starts
    its synthesis workers with ``spawn`` (see :func:`loaded`), never ``fork``.
    """
    global _ENGINE, _ENGINE_PID
    if _ENGINE_PID is not None and _ENGINE_PID != os.getpid():
        raise BenchError(
            "eSpeak NG was initialised in the parent of this forked process; start synthesis "
            "workers with the 'spawn' method (bench.synth.espeak.loaded() says when)"
        )
    if _ENGINE is None:
        _ENGINE = Espeak()
        _ENGINE_PID = os.getpid()
    return _ENGINE


def loaded() -> bool:
    """True when this process (or the process it was forked from) has initialised eSpeak NG."""
    return _ENGINE_PID is not None
