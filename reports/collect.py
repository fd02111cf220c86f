"""Read run directories into records and a tidy table, and group them into comparable systems.

A *run* is a folder holding ``metrics.json`` (a training run ``runs/<exp>/<loss>/seed<k>/`` or its
cross-corpus evaluation ``<run>/eval/<corpus>/``). A *system* is the set of runs that differ only by
seed: same loss, backbone, training corpus and evaluation corpus. Systems are compared only within
one evaluation corpus, and only when all their runs scored the same trial list (same sha256).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.results import (
    BUDGET_KEYS,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    EPOCHS_FILE,
    EVAL_DIR,
    METRICS_FILE,
    RUN_FILE,
    SCORES_FILE,
    UNTRAINED_DIR,
    MetricsRecord,
    read_json_object,
)
from bench.textio import read_text

# What the runner records about a run's training (its budget, bench.results.BUDGET_KEYS, and the
# checkpoint it scored), read by reports/convergence.py.
TRAINING_KEYS = (*BUDGET_KEYS, "checkpoint")


@dataclass
class Run:
    """One scored run: where it is, what produced it, and its headline numbers as recorded."""

    path: Path
    experiment: str
    loss: str
    backbone: str
    train_corpus: str
    eval_corpus: str
    seed: int
    preset: str
    enroll_mode: str
    trials_path: str
    trials_sha256: str
    status: str
    metrics: dict[str, Any]
    per_genre: dict[str, dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    run_root: Path | None = None  # the training run folder (differs from path for eval/<corpus>/)
    calibration: dict[str, Any] = field(default_factory=dict)  # metrics.json "calibration" (eval.calibration)
    eval_settings: dict[str, Any] = field(default_factory=dict)  # bench.scoring.score_settings
    training: dict[str, Any] = field(default_factory=dict)  # converged, epochs, steps, samples_seen, ...

    @property
    def system_key(self) -> tuple[str, str, str, str]:
        return (self.loss, self.backbone, self.train_corpus, self.eval_corpus)

    @property
    def scores_path(self) -> Path:
        return self.path / SCORES_FILE

    @property
    def epochs_path(self) -> Path | None:
        for base in (self.path, self.run_root):
            if base is not None and (base / EPOCHS_FILE).exists():
                return base / EPOCHS_FILE
        return None

    def versions(self) -> dict[str, str]:
        return dict(self.provenance.get("versions") or {})

    def git_commit(self) -> str:
        git = self.provenance.get("git") or {}
        commit = str(git.get("commit", "unknown"))
        return commit[:10] + ("+dirty" if git.get("dirty") else "")


@dataclass
class System:
    """Runs of one (loss, backbone, train corpus, eval corpus) that differ only by seed."""

    key: tuple[str, str, str, str]
    runs: list[Run]
    label: str = ""
    # set when runs of this key come from several experiments (another corpus folder, another
    # recipe): each experiment is then its own system, labelled with its name
    experiment: str = ""

    @property
    def loss(self) -> str:
        return self.key[0]

    @property
    def backbone(self) -> str:
        return self.key[1]

    @property
    def train_corpus(self) -> str:
        return self.key[2]

    @property
    def eval_corpus(self) -> str:
        return self.key[3]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Every folder under ``paths`` (experiment dirs or run dirs) that holds a ``metrics.json``."""
    if not paths:
        raise BenchError("no run directories given")
    found: list[Path] = []
    for p in paths:
        root = Path(p)
        if not root.exists():
            raise BenchError("no such run or experiment directory", path=root)
        if root.is_file():
            if root.name == METRICS_FILE:
                found.append(root.parent)
                continue
            raise BenchError("expected a run or experiment directory, got a file", path=root)
        hits = sorted(m.parent for m in root.rglob(METRICS_FILE) if not _ignored(m.parent.relative_to(root)))
        if not hits:
            raise BenchError(f"no {METRICS_FILE} found below this directory (is it a finished run?)", path=root)
        found.extend(hits)
    # The same run named twice (e.g. an experiment dir and one of its runs) counts once.
    unique: dict[Path, None] = {}
    for d in found:
        unique.setdefault(d.resolve(), None)
    return list(unique)


# Folders whose metrics are diagnostics, not systems: the runner's score of the untrained model.
IGNORED_DIRS = {UNTRAINED_DIR, CHECKPOINT_DIR}


def _ignored(rel: Path) -> bool:
    return any(part in IGNORED_DIRS or part.startswith(".") for part in rel.parts)


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path, "config file"))
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"invalid TOML: {e}", path=path) from None


def _find_up(start: Path, name: str, levels: int = 3) -> Path | None:
    """``name`` in ``start`` or, for ``<run>/eval/<corpus>/``, in the training run above it."""
    d = start
    for _ in range(levels):
        if (d / name).exists():
            return d / name
        d = d.parent
    return None


def _seed_of(record: MetricsRecord, run_json: dict[str, Any], cfg: dict[str, Any], run_root: Path) -> int:
    """The run's seed: as recorded (metrics.json, run.json, config.toml); only files older than
    those records fall back to the ``seed<k>`` folder name."""
    for seed in (record.seed, run_json.get("seed"), (cfg.get("train") or {}).get("seed")):
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
    for part in reversed(run_root.parts):
        if part.startswith("seed") and part[4:].isdigit():
            return int(part[4:])
    return 0


def _loss_of(record: MetricsRecord, run_json: dict[str, Any], cfg: dict[str, Any], run_root: Path) -> str:
    """The run's loss name: as recorded; only files older than those records fall back to the folder."""
    for loss in (record.loss, run_json.get("loss"), (cfg.get("loss") or {}).get("name")):
        if isinstance(loss, str) and loss:
            return loss
    return run_root.parent.name


def load_run(path: str | Path) -> Run:
    """Read one run folder: ``metrics.json`` (:class:`bench.results.MetricsRecord`) plus the config and
    provenance of its training run."""
    d = Path(path)
    mfile = d / METRICS_FILE
    if not mfile.exists():
        raise BenchError(f"not a run directory: {METRICS_FILE} is missing", path=d)
    m = MetricsRecord.from_json(mfile)
    sha = m.trials.sha256 if m.trials is not None else None
    if not sha:
        # Trials generated in memory have no file to hash; identify them by their content instead.
        if not (d / SCORES_FILE).exists():
            raise BenchError(f"{METRICS_FILE} records no trial-list sha256 and there is no {SCORES_FILE}", path=mfile)
        sha = "keys:" + trials_fingerprint(d / SCORES_FILE)

    cfg_file = _find_up(d, CONFIG_FILE)
    cfg = _read_toml(cfg_file) if cfg_file else {}
    run_file = _find_up(d, RUN_FILE)
    run_json = _read_json(run_file) if run_file else {}
    run_root = run_file.parent if run_file else (cfg_file.parent if cfg_file else d)

    data_cfg = cfg.get("data") or {}
    # a cross-corpus result (bench eval, under <run>/eval/) records the training corpus it came from;
    # a run's own result was scored on its own corpus, whatever names the config and reader used
    if d.parent.name == EVAL_DIR:
        train_corpus = str((m.cross.train_corpus if m.cross else "") or data_cfg.get("corpus", "unknown"))
        eval_corpus = str(m.corpus or d.name)
    else:
        train_corpus = eval_corpus = str(m.corpus or data_cfg.get("corpus", "unknown"))
    # run.json keeps provenance either at the top level or under "provenance".
    prov = run_json.get("provenance") if isinstance(run_json.get("provenance"), dict) else run_json
    loss = _loss_of(m, run_json, cfg, run_root)
    finetune = str((cfg.get("finetune") or {}).get("name") or "")
    calibration = m.calibration
    flat = m.to_json()
    return Run(
        path=d,
        experiment=str(cfg.get("experiment") or run_json.get("experiment") or run_root.parent.parent.name),
        # a fine-tuning run (bench run --finetune lm) is its own system, "<loss>+lm"
        loss=f"{loss}+{finetune}" if finetune else loss,
        backbone=str((cfg.get("model") or {}).get("backbone", "unknown")),
        train_corpus=train_corpus,
        eval_corpus=eval_corpus,
        seed=_seed_of(m, run_json, cfg, run_root),
        preset=str(cfg.get("preset") or ""),
        enroll_mode=str(m.enroll_mode or (cfg.get("eval") or {}).get("enroll_mode", "unknown")),
        trials_path=m.trials.path if m.trials is not None else "",
        trials_sha256=str(sha),
        status=str(run_json.get("status", "unknown")),
        metrics=m.overall,
        per_genre=dict(m.per_genre),
        config=cfg,
        provenance=prov or {},
        run_root=run_root,
        calibration=calibration if isinstance(calibration, dict) else {},
        eval_settings=_eval_settings(m, cfg),
        # a cross-corpus result records no budget: the training run's run.json has it
        training={k: v for k in TRAINING_KEYS if (v := flat.get(k, run_json.get(k))) is not None},
    )


def _eval_settings(m: MetricsRecord, cfg: dict[str, Any]) -> dict[str, Any]:
    """Recorded ``eval_settings``; older metrics.json files: rebuilt from their keys and config.toml."""
    from bench.scoring import score_settings

    if m.scoring is not None and m.scoring.eval_settings is not None:
        return dict(m.scoring.eval_settings)
    ev = {**(cfg.get("eval") or {})}
    flat = m.to_json()
    for k in ("enroll_mode", "asnorm", "crops"):
        if k in flat:
            ev[k] = flat[k]
    return score_settings(ev)


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Find and read all runs under ``paths``; unfinished runs are refused by name."""
    runs = [load_run(d) for d in find_run_dirs(paths)]
    bad = [r for r in runs if r.status not in ("finished", "unknown")]
    if bad:
        names = ", ".join(str(r.path) for r in bad[:5])
        raise BenchError(f"{len(bad)} run(s) are not finished (status {bad[0].status}): {names}")
    return runs


def recipe(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a comparison of losses must show beside each result (their tuned values differ per loss):
    the run's ``lr`` and its loss's numeric parameters, e.g. ``scale=10.69 margin=0.09``, from its
    config.toml (blank where a run has none)."""
    optim = cfg.get("optim") or {}
    params = (cfg.get("loss") or {}).get("params") or {}
    shown = [f"{k}={v:g}" for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {"lr": optim.get("lr", ""), "loss_params": " ".join(shown)}


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """A tidy table, one row per run, with identity, provenance and the recorded metrics."""
    rows = []
    for r in runs:
        v = r.versions()
        row: dict[str, Any] = {
            "run": str(r.path),
            "experiment": r.experiment,
            "loss": r.loss,
            "backbone": r.backbone,
            "train_corpus": r.train_corpus,
            "eval_corpus": r.eval_corpus,
            "seed": r.seed,
            "preset": r.preset,
            "enroll_mode": r.enroll_mode,
            "trials": r.trials_path,
            "trials_sha256": r.trials_sha256[:12],
            "git": r.git_commit(),
            "torch": v.get("torch", ""),
            "python": v.get("python", ""),
            "converged": r.training.get("converged", ""),
            "epochs": r.training.get("epochs", ""),
            "steps": r.training.get("steps", ""),
            "samples_seen": r.training.get("samples_seen", ""),
            **recipe(r.config),
        }
        for k, val in r.metrics.items():
            if isinstance(val, (int, float)):
                row[k] = val
        rows.append(row)
    return pd.DataFrame(rows)


def group_systems(runs: list[Run]) -> dict[str, list[System]]:
    """Systems per evaluation corpus, refusing to compare runs on different trial lists.

    Within one evaluation corpus every run must carry the same trial-list sha256; otherwise the
    comparison would silently mix different trials, so it stops and names the conflicting runs.
    """
    by_corpus: dict[str, list[Run]] = {}
    for r in runs:
        by_corpus.setdefault(r.eval_corpus, []).append(r)
    out: dict[str, list[System]] = {}
    for corpus, rs in sorted(by_corpus.items()):
        shas: dict[str, list[Run]] = {}
        for r in rs:
            shas.setdefault(r.trials_sha256, []).append(r)
        if len(shas) > 1:
            lines = [
                f"  trials {sha[:12]} ({group[0].trials_path or '?'}): " + ", ".join(str(x.path) for x in group[:3])
                for sha, group in shas.items()
            ]
            raise BenchError(
                f"runs evaluated on corpus '{corpus}' used different trial lists; they cannot be compared "
                "trial by trial. Report them separately:\n" + "\n".join(lines),
                path=rs[0].path,
            )
        systems: dict[tuple[str, str, str, str], list[Run]] = {}
        for r in rs:
            systems.setdefault(r.system_key, []).append(r)
        # One key from several experiments (e.g. the same loss trained on two synthetic corpora, both
        # named "synthetic") is one system per experiment: an experiment is one config.
        split: dict[tuple[tuple[str, str, str, str], str], list[Run]] = {}
        for key, members in systems.items():
            several = len({m.experiment for m in members}) > 1
            for m in members:
                split.setdefault((key, m.experiment if several else ""), []).append(m)
        group = []
        for (key, experiment), members in sorted(split.items()):
            seeds = [m.seed for m in members]
            if len(set(seeds)) != len(seeds):
                dup = sorted({s for s in seeds if seeds.count(s) > 1})
                paths = ", ".join(str(m.path) for m in members if m.seed in dup)
                raise BenchError(f"system {'/'.join(key)} has more than one run with seed {dup[0]}: {paths}")
            _same_settings(key, members)
            group.append(System(key=key, runs=sorted(members, key=lambda m: m.seed), experiment=experiment))
        _label(group)
        out[corpus] = group
    return out


def _same_settings(key: tuple[str, ...], members: list[Run]) -> None:
    """Seeds of one system are pooled only when they were scored the same way (AS-norm, crops, ...)."""
    first = members[0].eval_settings
    for r in members[1:]:
        diff = sorted(k for k in set(first) | set(r.eval_settings) if first.get(k) != r.eval_settings.get(k))
        if diff:
            shown = "; ".join(
                f"{k}: {first.get(k)!r} in {members[0].path} vs {r.eval_settings.get(k)!r} in {r.path}" for k in diff
            )
            raise BenchError(
                f"system {'/'.join(key)}: its runs were evaluated with different settings ({shown}); "
                "their scores cannot be pooled. Re-evaluate them alike or report them separately",
                path=r.path,
            )


def _label(systems: list[System]) -> None:
    """Name systems by the parts of their key that vary (loss alone when only losses differ)."""
    names = ["loss", "backbone", "train"]
    varying = [i for i in range(3) if len({s.key[i] for s in systems}) > 1] or [0]
    if 0 not in varying:
        varying = [0, *varying]
    for s in systems:
        s.label = " / ".join(s.key[i] if i == 0 else f"{names[i]}={s.key[i]}" for i in varying)
        if s.train_corpus != s.eval_corpus:
            s.label += f" ({s.train_corpus} -> {s.eval_corpus})"
        if s.experiment:
            s.label += f" [{s.experiment}]"


def trials_fingerprint(scores_path: Path) -> str:
    """sha256 of the sorted ``enroll test label`` keys of a score file (the scores themselves excluded)."""
    import hashlib

    df = read_scores(scores_path)
    keys = sorted(f"{e} {t} {int(lab)}" for e, t, lab in zip(df["enroll"], df["test"], df["label"]))
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def read_scores(path: str | Path) -> pd.DataFrame:
    """A labelled score file (``enroll test score label``) as columns enroll, test, score, label.

    Parsing is ``bench.scoring`` (errors name the file and line); a report also needs the labels
    and unique (enroll, test) keys, checked here.  ``enroll`` and ``test`` are categoricals.
    """
    import numpy as np

    from bench.scoring import key_index, read_score_columns

    p = Path(path)
    if not p.exists():
        raise BenchError("score file not found", path=p)
    sf = read_score_columns(p)
    if sf.labels is None:
        raise BenchError("score file has no label column; a report needs 'enroll test score label'", path=p)
    key = sf.enroll.codes.astype(np.int64) * max(len(sf.test.categories), 1) + sf.test.codes
    if pd.Index(key).has_duplicates:  # key_index names the lines of the first repeated pair
        values = [np.asarray(c.categories, dtype=object)[c.codes].tolist() for c in (sf.enroll, sf.test)]
        key_index(*values, path=p, lines=sf.lines)
    return pd.DataFrame({"enroll": sf.enroll, "test": sf.test, "score": sf.scores, "label": sf.labels})
