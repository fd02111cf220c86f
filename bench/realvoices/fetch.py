"""Get Debian packages into a cache folder without installing them: ``apt-get download`` + ``dpkg -x``.

Cache layout::

    <cache>/debs/<package>_<version>_all.deb    what apt-get downloaded (or what you copied there)
    <cache>/pkg/<package>/usr/...               the unpacked package (dpkg -x), complete once
                                                <cache>/pkg/<package>/.unpacked exists

Nothing needs root: ``apt-get download`` writes into the current folder and ``dpkg -x`` unpacks
without touching the package database. Package lists must be present (``apt-get update``, run
once, needs root); when a download fails the lists are refreshed once and the download retried.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MARKER = ".unpacked"


@dataclass
class FetchResult:
    roots: dict[str, Path] = field(default_factory=dict)  # package -> unpacked root
    missing: dict[str, str] = field(default_factory=dict)  # package -> why


def how_to_get(packages: list[str], cache: Path) -> str:
    """Instructions for getting ``packages`` by hand into ``cache``."""
    names = " ".join(packages)
    return (
        f"on Debian/Ubuntu: `sudo apt-get update && cd {cache / 'debs'} && apt-get download {names}` "
        f"(or copy those .deb files into {cache / 'debs'}/ from any Debian mirror), then run the command again"
    )


def unpacked(cache: Path, package: str) -> Path | None:
    root = cache / "pkg" / package
    return root if (root / MARKER).is_file() else None


def _deb_of(cache: Path, package: str) -> Path | None:
    debs = sorted((cache / "debs").glob(f"{package}_*.deb"))
    return debs[-1] if debs else None


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> tuple[bool, str]:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    tail = (p.stderr or p.stdout).strip().splitlines()
    return p.returncode == 0, tail[-1] if tail else ""


def _download(packages: list[str], cache: Path, log: list[str]) -> None:
    """``apt-get download`` each package into ``cache/debs`` (lists refreshed once on failure)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    refreshed = False
    for pkg in packages:
        ok, msg = _run(["apt-get", "download", pkg], cwd=debs)
        if not ok and not refreshed:
            refreshed = True
            up_ok, up_msg = _run(["apt-get", "update"])
            log.append(f"apt-get update: {'ok' if up_ok else up_msg}")
            ok, msg = _run(["apt-get", "download", pkg], cwd=debs)
        if not ok:
            log.append(f"apt-get download {pkg}: {msg}")


def _unpack(deb: Path, dest: Path) -> tuple[bool, str]:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ok, msg = _run(["dpkg", "-x", str(deb), str(tmp)])
    if not ok:
        shutil.rmtree(tmp, ignore_errors=True)
        return False, f"dpkg -x {deb.name}: {msg}"
    (tmp / MARKER).write_text(deb.name + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return True, ""


def fetch(packages: list[str], cache: str | Path, download: bool = True) -> FetchResult:
    """Unpacked roots of ``packages`` under ``cache``, downloading and unpacking what is missing.

    Never raises for an unavailable package: it is listed in ``missing`` with the reason (no
    apt-get/dpkg on this system, no network, unknown package) so the caller can go on without it.
    """
    cache = Path(cache)
    res = FetchResult()
    need = [p for p in packages if unpacked(cache, p) is None and _deb_of(cache, p) is None]
    log: list[str] = []
    if need and download:
        if shutil.which("apt-get") is None:
            log.append("apt-get is not available on this system")
        else:
            _download(need, cache, log)
    for pkg in packages:
        root = unpacked(cache, pkg)
        if root is None:
            deb = _deb_of(cache, pkg)
            if deb is None:
                res.missing[pkg] = "; ".join(m for m in log if pkg in m or "apt-get is not" in m or "update" in m) or (
                    "not in the cache" + ("" if download else " (downloads disabled)"))  # fmt: skip
                continue
            if shutil.which("dpkg") is None:
                res.missing[pkg] = f"{deb.name} is here but dpkg is not available to unpack it"
                continue
            ok, msg = _unpack(deb, cache / "pkg" / pkg)
            if not ok:
                res.missing[pkg] = msg
                continue
            root = cache / "pkg" / pkg
        res.roots[pkg] = root
    return res
