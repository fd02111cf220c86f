"""Plan and write the synthetic corpus in the CN-Celeb1 layout.

Layout under ``out`` (lists say ``.wav`` where files are ``.flac``, as CN-Celeb1 does)::

    data/<spk>/<genre>-<session>-<idx>.flac      training, validation and eval-enrolment utterances
    dev/dev.lst                                  training speaker ids (validation speakers left out)
    dev/val_trials.lst                           CN-Celeb-format trials over the validation speakers
    eval/enroll/<spk>-enroll.flac                concatenated enrolment utterances
    eval/test/<spk>-<genre>-<session>-<idx>.flac
    eval/lists/{enroll.lst,enroll.map,test.lst,trials.lst}
    musan/{noise,music,speech}/*.flac            augmentation banks (speech: held-out speakers)
    rirs/simulated_rirs/<room type>/*.flac       simulated room impulse responses
    corpus.json                                  manifest, written last

Every random choice is drawn from a generator seeded by (seed, stream, ids...), never from a
shared stream, so a file's content does not depend on worker count, task order or on which files
an interrupted run had already written.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.io import atomic_open, atomic_write, atomic_write_json
from bench.synth.config import GENERATOR_VERSION, SynthConfig
from bench.synth.speech import (  # noqa: F401 (SR, the streams and speak stay importable from here)
    S_CORPUS_BABBLE,
    S_MUSIC_BANK,
    S_NOISE_BANK,
    S_PLAN,
    S_RIR,
    S_SESSION,
    S_SPEECH_BANK,
    S_UTT,
    S_VAL,
    S_VOICE,
    SR,
    clean_passage,
    rng_for,
    speak,
    to_pcm16,
    write_flac,
)

ROLES = ("train", "val", "eval")


@dataclass(frozen=True)
class Utt:
    """One utterance of a speaker; ``k`` is its position in the speaker's plan (seeds its RNG)."""

    k: int
    genre: str
    session: int
    idx: int

    @property
    def name(self) -> str:
        return f"{self.genre}-{self.session:02d}-{self.idx:03d}"


@dataclass(frozen=True)
class SpeakerPlan:
    index: int
    spk: str
    role: str
    utts: tuple[Utt, ...]  # train/val: all utterances; eval: enrolment utterances
    test: tuple[Utt, ...] = ()


def speaker_id(index: int) -> str:
    return f"id{index:05d}"


def plan_speaker(cfg: SynthConfig, index: int, role: str) -> SpeakerPlan:
    """Genres, sessions and utterance names of one speaker (cheap and pure)."""
    from bench.synth.channels import GENRES

    rng = rng_for(cfg, S_PLAN, index)
    names = list(GENRES)
    lo, hi = cfg.genres_per_speaker
    n_genres = int(rng.integers(max(lo, 2 if role == "eval" else 1), max(hi, lo, 2) + 1))
    genres = [names[i] for i in rng.choice(len(names), size=min(n_genres, len(names)), replace=False)]
    pairs = [
        (g, s)
        for g in genres
        for s in range(1, int(rng.integers(cfg.sessions_per_genre[0], cfg.sessions_per_genre[1] + 1)) + 1)
    ]
    counters: dict[tuple[str, int], int] = {}

    def make(k: int, pair: tuple[str, int]) -> Utt:
        counters[pair] = counters.get(pair, 0) + 1
        return Utt(k, pair[0], pair[1], counters[pair])

    if role != "eval":
        # Every session gets at least one utterance while there are enough of them.
        order = [pairs[i % len(pairs)] for i in range(min(cfg.utts, len(pairs)))]
        order += [pairs[i] for i in rng.integers(0, len(pairs), size=cfg.utts - len(order))]
        return SpeakerPlan(index, speaker_id(index), role, tuple(make(k, p) for k, p in enumerate(order)))
    # Enrolment from one session; tests from the speaker's other sessions (other genres included),
    # so enrolment and test differ in channel as in CN-Celeb.
    enroll_pair, others = (
        pairs[0],
        [p for p in pairs if p[0] != pairs[0][0]] + [p for p in pairs[1:] if p[0] == pairs[0][0]],
    )
    enroll = tuple(make(k, enroll_pair) for k in range(cfg.enroll_utts))
    test_pairs = [others[i] for i in rng.integers(0, len(others), size=cfg.test_utts)]
    test = tuple(make(cfg.enroll_utts + k, p) for k, p in enumerate(test_pairs))
    return SpeakerPlan(index, speaker_id(index), role, enroll, test)


def plan(cfg: SynthConfig) -> list[SpeakerPlan]:
    """All speakers: ids id00000.. for training then validation speakers, eval speakers after them."""
    roles = ["train"] * cfg.train_speakers + ["val"] * cfg.val_speakers + ["eval"] * cfg.eval_speakers
    return [plan_speaker(cfg, i, r) for i, r in enumerate(roles)]


# ---------------------------------------------------------------- audio of one utterance
_BABBLE: dict[tuple, list[np.ndarray]] = {}


def corpus_babble_pool(cfg: SynthConfig) -> list[np.ndarray]:
    """Clean speech of the in-corpus babble talkers, synthesised once per process."""
    key = (cfg.seed, cfg.corpus_babble_speakers, cfg.spread, cfg.languages, cfg.prosody, cfg.glottal)
    if key not in _BABBLE:
        _BABBLE[key] = [
            clean_passage(cfg, rng_for(cfg, S_CORPUS_BABBLE, k), 6.0) for k in range(cfg.corpus_babble_speakers)
        ]
    return _BABBLE[key]


class SpeakerWriter:
    """Synthesises and writes one speaker's files; sessions share one channel each."""

    def __init__(self, cfg: SynthConfig, out: Path, sp: SpeakerPlan):
        from bench.synth.voices import sample_voice

        self.cfg, self.out, self.sp = cfg, out, sp
        self.voice = sample_voice(rng_for(cfg, S_VOICE, sp.index), cfg.spread, cfg.languages, cfg.glottal)
        self._channels: dict = {}

    def channel(self, genre: str, session: int):
        from bench.synth.channels import GENRES, make_channel

        key = (genre, session)
        if key not in self._channels:
            g_idx = list(GENRES).index(genre)
            self._channels[key] = make_channel(
                genre, rng_for(self.cfg, S_SESSION, self.sp.index, g_idx, session), self.cfg.telephone
            )
        return self._channels[key]

    def render(self, u: Utt) -> np.ndarray:
        """The utterance as 16-bit PCM; depends only on (seed, speaker, utterance)."""
        from bench.synth.channels import NoiseContext, apply_channel

        cfg = self.cfg
        rng = rng_for(cfg, S_UTT, self.sp.index, u.k)
        seconds = rng.uniform(cfg.min_seconds, cfg.max_seconds)
        speech = speak(self.voice, u.genre, rng, seconds, cfg.jitter, cfg.prosody, cfg.languages)
        ctx = NoiseContext(corpus_babble_pool(cfg) if self.channel(u.genre, u.session).noise == "babble" else [])
        return to_pcm16(apply_channel(speech, self.channel(u.genre, u.session), rng, ctx))

    def run(self) -> int:
        """Write the speaker's missing files; returns the number of utterances handled."""
        sp, out = self.sp, self.out
        for u in sp.utts:
            if sp.role != "eval":
                path = out / "data" / sp.spk / f"{u.name}.flac"
                if not path.exists():
                    write_flac(path, self.render(u))
        if sp.role == "eval":
            parts = [out / "data" / sp.spk / f"{u.name}.flac" for u in sp.utts]
            concat = out / "eval" / "enroll" / f"{sp.spk}-enroll.flac"
            if not (concat.exists() and all(p.exists() for p in parts)):
                pcm = [self.render(u) for u in sp.utts]
                for p, x in zip(parts, pcm):
                    if not p.exists():
                        write_flac(p, x)
                write_flac(concat, np.concatenate(pcm))
            for u in sp.test:
                path = out / "eval" / "test" / f"{sp.spk}-{u.name}.flac"
                if not path.exists():
                    write_flac(path, self.render(u))
        return len(sp.utts) + len(sp.test)


# ---------------------------------------------------------------- tasks and workers
Task = tuple[str, int]


def tasks(cfg: SynthConfig, speakers: list[SpeakerPlan]) -> list[tuple[Task, int]]:
    """(task, units of progress) for everything to generate."""
    from bench.synth.banks import bank_tasks

    out: list[tuple[Task, int]] = [(("speaker", sp.index), len(sp.utts) + len(sp.test)) for sp in speakers]
    return out + bank_tasks(cfg)


_WORKER: dict = {}


def _init_worker(cfg: SynthConfig, out: Path, parent_pid: int | None = None) -> None:
    from bench.procs import die_with_parent, ignore_interrupt

    if parent_pid is not None:
        die_with_parent(parent_pid)  # a killed `bench data synth` leaves no workers behind
        ignore_interrupt()  # Ctrl-C is the parent's: it cancels the pool (see _run_pool)

    _WORKER.update(cfg=cfg, out=out, plans={})


def _run_task(task: Task) -> int:
    from bench.synth.banks import run_bank_task

    cfg, out = _WORKER["cfg"], _WORKER["out"]
    kind, index = task
    if kind == "speaker":
        role = (
            ROLES[0]
            if index < cfg.train_speakers
            else ROLES[1]
            if index < cfg.train_speakers + cfg.val_speakers
            else ROLES[2]
        )
        return SpeakerWriter(cfg, out, plan_speaker(cfg, index, role)).run()
    return run_bank_task(cfg, out, task)


def _pool_context() -> mp.context.BaseContext:
    # fork is fast, and safe while this process has not initialised eSpeak (`bench data synth`
    # never does); a child forked from an initialised library would initialise it a second time,
    # which corrupts its phoneme tables (see espeak.engine).  Elsewhere spawn is the only choice.
    from bench.synth import espeak

    fork = sys.platform.startswith("linux") and not espeak.loaded()
    return mp.get_context("fork" if fork else "spawn")


# ---------------------------------------------------------------- lists and manifest
def write_lists(cfg: SynthConfig, out: Path, speakers: list[SpeakerPlan]) -> dict[str, int]:
    """The CN-Celeb1 list files plus dev/dev.lst and dev/val_trials.lst; returns their counts."""
    train = [sp for sp in speakers if sp.role == "train"]
    val = [sp for sp in speakers if sp.role == "val"]
    ev = [sp for sp in speakers if sp.role == "eval"]
    atomic_write(out / "dev" / "dev.lst", "".join(f"{sp.spk}\n" for sp in train))

    enroll_lst = "".join(f"{sp.spk}-enroll enroll/{sp.spk}-enroll.wav\n" for sp in ev)
    enroll_map = "".join(f"{sp.spk}-enroll " + " ".join(f"{sp.spk}/{u.name}.wav" for u in sp.utts) + "\n" for sp in ev)
    tests = [f"test/{sp.spk}-{u.name}.wav" for sp in ev for u in sp.test]
    owner = [sp.spk for sp in ev for _ in sp.test]
    lists = out / "eval" / "lists"
    atomic_write(lists / "enroll.lst", enroll_lst)
    atomic_write(lists / "enroll.map", enroll_map)
    atomic_write(lists / "test.lst", "".join(t + "\n" for t in tests))
    with atomic_open(lists / "trials.lst", "w") as fh:
        for sp in ev:
            for t, o in zip(tests, owner):
                fh.write(f"{sp.spk}-enroll {t} {int(o == sp.spk)}\n")

    n_val = write_val_trials(cfg, out / "dev" / "val_trials.lst", val)
    return {
        "trials": len(ev) * len(tests),
        "target_trials": len(tests),
        "val_trials": n_val,
    }


def write_val_trials(cfg: SynthConfig, path: Path, val: list[SpeakerPlan]) -> int:
    """All same-speaker pairs of the validation speakers plus ``val_nontarget_ratio`` times as many
    random different-speaker pairs, in CN-Celeb trial format; returns the number of lines."""
    utts = [(sp.spk, f"{sp.spk}/{u.name}.wav") for sp in val for u in sp.utts]
    lines = []
    for i, (si, a) in enumerate(utts):
        for sj, b in utts[i + 1 :]:
            if si == sj:
                lines.append(f"{a} {b} 1\n")
    rng = rng_for(cfg, S_VAL)
    n_non = min(len(lines) * cfg.val_nontarget_ratio, len(utts) * (len(utts) - 1) // 2 - len(lines))
    seen: set[tuple[int, int]] = set()
    while len(seen) < n_non:
        i, j = (int(v) for v in rng.integers(0, len(utts), size=2))
        if utts[i][0] != utts[j][0] and (i, j) not in seen and (j, i) not in seen:
            seen.add((i, j))
            lines.append(f"{utts[i][1]} {utts[j][1]} 0\n")
    order = rng.permutation(len(lines))
    atomic_write(path, "".join(lines[i] for i in order))
    return len(lines)


def manifest_params(cfg: SynthConfig) -> dict:
    from bench.synth.config import TRANSFER_DEFAULTS

    params = {k: v for k, v in cfg.to_dict().items() if not (k in TRANSFER_DEFAULTS and v == TRANSFER_DEFAULTS[k])}
    return {"generator_version": GENERATOR_VERSION, **params}


def read_manifest(out: Path) -> dict | None:
    path = out / "corpus.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"unreadable corpus manifest ({e}); delete it to regenerate", path) from e


def generate(
    cfg: SynthConfig, out: str | Path, workers: int = 1, progress: Callable[[int, int], None] | None = None
) -> dict:
    """Generate (or finish generating) the corpus under ``out``; returns the manifest.

    A complete corpus with the same parameters is left untouched (the manifest is returned with
    ``"reused": True``).  An interrupted run resumes: finished files are kept, missing ones made.
    ``progress(done, total)`` is called as utterance-sized units complete.
    """
    out = Path(out)
    params = manifest_params(cfg)
    existing = read_manifest(out)
    if existing is not None:
        if existing.get("params") != params:
            raise BenchError(
                "a corpus with different parameters is already here; choose another --out or delete it",
                out / "corpus.json",
            )
        return {**existing, "reused": True}
    pending = out / ".synth-params.json"
    if pending.exists():
        try:
            previous = json.loads(pending.read_text())
        except (OSError, json.JSONDecodeError):
            previous = params
        if previous != params:
            raise BenchError(
                "an unfinished corpus with different parameters is here; use the same options to resume, "
                "or another --out",
                pending,
            )
    elif out.exists() and any(out.iterdir()):
        raise BenchError("output folder is not empty and holds no synthetic corpus; choose another --out", out)
    atomic_write_json(pending, params)

    start = time.perf_counter()
    speakers = plan(cfg)
    todo = tasks(cfg, speakers)
    total = sum(units for _, units in todo)
    done = 0
    units = dict(todo)

    def finished(t: Task) -> None:
        nonlocal done
        done += units[t]
        if progress:
            progress(done, total)

    if progress:
        progress(0, total)
    # Largest tasks first so the pool does not end waiting on one straggler.
    ordered = [t for t, _ in sorted(todo, key=lambda tu: -tu[1])]
    if workers <= 1:
        _init_worker(cfg, out)
        for t in ordered:
            _run_task(t)
            finished(t)
    else:
        _run_pool(cfg, out, workers, ordered, finished)
    counts = {role: sum(sp.role == role for sp in speakers) for role in ROLES}
    counts.update(
        train_utts=sum(len(sp.utts) for sp in speakers if sp.role == "train"),
        val_utts=sum(len(sp.utts) for sp in speakers if sp.role == "val"),
        enroll_utts=sum(len(sp.utts) for sp in speakers if sp.role == "eval"),
        test_utts=sum(len(sp.test) for sp in speakers if sp.role == "eval"),
    )
    counts.update(write_lists(cfg, out, speakers))
    from bench.synth.banks import bank_counts

    counts.update(bank_counts(cfg))
    manifest = {
        "generator": "bench.synth",
        "preset": cfg.preset,
        "seed": cfg.seed,
        "params": params,
        "counts": counts,
        "generation_seconds": round(time.perf_counter() - start, 2),
        "workers": workers,
    }
    atomic_write_json(out / "corpus.json", manifest)
    pending.unlink(missing_ok=True)
    return {**manifest, "reused": False}


POOL_ATTEMPTS = 2


def _run_pool(cfg: SynthConfig, out: Path, workers: int, ordered: list[Task], finished: Callable[[Task], None]) -> None:
    """Run ``ordered`` on a pool of ``workers`` processes, calling ``finished(task)`` as each ends.

    A worker that dies (a crash inside the eSpeak library, the out-of-memory killer) breaks the whole
    pool; the unfinished tasks then run once more on a new pool, which is what re-running the command
    would do (finished files are kept, every file depends only on its own seed).  A second death is an
    error: something is wrong beyond a rare crash.
    """
    import warnings
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    remaining = list(ordered)
    for attempt in range(1, POOL_ATTEMPTS + 1):
        ended: set[Task] = set()
        # ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies raises here instead of
        # leaving the parent waiting forever; its shutdown lets the workers exit on their own, so
        # each removes its eSpeak overlay folder.
        with ProcessPoolExecutor(
            workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(cfg, out, os.getpid())
        ) as ex:
            futures = []
            try:
                # inside the try: a worker that dies at once breaks the pool while tasks are submitted
                for t in remaining:
                    futures.append(ex.submit(_run_task_keyed, t))
                for fut in as_completed(futures):
                    t = fut.result()
                    ended.add(t)
                    finished(t)
                return
            except BrokenProcessPool as e:
                # tasks that ended before the pool broke but were not yet collected
                for fut in futures:
                    if fut.done() and not fut.cancelled() and fut.exception() is None and fut.result() not in ended:
                        ended.add(fut.result())
                        finished(fut.result())
                remaining = [t for t in remaining if t not in ended]
                if attempt == POOL_ATTEMPTS:
                    raise BenchError(
                        f"a corpus-generation worker died twice ({e}); run the same command again: the "
                        "finished speakers are kept and generation resumes"
                    ) from e
                warnings.warn(
                    f"a corpus-generation worker died ({e}); {len(remaining)} unfinished tasks run again on a new pool",
                    RuntimeWarning,
                    stacklevel=3,
                )
            except BaseException:
                # a task's own error (a bad voice, a full disk) or Ctrl-C: stop now, not after the other
                # tasks; the workers ignore SIGINT and end with the task they are on
                ex.shutdown(wait=True, cancel_futures=True)
                raise


def _run_task_keyed(task: Task) -> Task:
    _run_task(task)
    return task
