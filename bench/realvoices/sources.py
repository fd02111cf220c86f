"""Where real recorded voices come from: Debian packages, their speakers, and their licences.

Each :class:`Voice` is one person reading in one language, found inside one package once it is
unpacked with ``dpkg -x``. Voices are grouped into *cells* (a recording source and a language, or
one source whose readers each speak their own language); trials never cross cells, so that the
channel (8 kHz telephone prompts vs. wideband microphone recordings) never tells speakers apart.

Facts below were read from the packages of Debian 12 (bookworm):

- ``klettres-data`` (KDE KLettres): one reader per language folder ``usr/share/klettres/<lang>/``
  (``alpha/`` letters, ``syllab/`` syllables and short words), Ogg Vorbis, mostly 44.1 kHz.
  ``es``, ``pt_BR`` and ``nds`` mix two unlabelled readers and are left out. GPL-2+.
- ``asterisk-core-sounds-{en,es,fr,it,ru}-wav``: telephone prompts, 8 kHz 16-bit WAV, one
  professional voice per package (es is read by the en voice, Allison Smith). CC-BY(-SA)-3.0.
- ``asterisk-prompt-es-co`` and ``asterisk-prompt-fr-armelle``: other voices, headerless GSM 6.10.
- ``asterisk-prompt-it-menardi-wav``: a second Italian voice, 8 kHz WAV. CC-BY-SA-3.0.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

KLETTRES = "klettres-data"
# Two unlabelled readers each (found when the packages were surveyed): no labels, so left out.
KLETTRES_MIXED = ("es", "pt_BR", "nds")
KLETTRES_LANGS = ("ar", "cs", "da", "de", "en", "en_GB", "fr", "he", "hu", "it", "lt", "ml", "nb", "nl", "ru",
                  "tn", "uk")  # fmt: skip

# Prompts that are not speech or not the voice (tones, silence files).
SKIP_NAMES = re.compile(r"(^|[-_/])(beep|silence|tone|dial|ring|music)", re.IGNORECASE)


@dataclass(frozen=True)
class Voice:
    """One reader in one language inside one package.

    ``clip_glob`` is relative to the unpacked package root; ``fmt`` is how soundfile reads a clip
    (``"gsm"``: headerless GSM 6.10 at 8 kHz). ``stanza`` picks the DEP-5 ``Files:`` paragraph of
    the package's copyright file whose licence covers the voice; packages whose copyright file is
    not DEP-5 give ``licence`` themselves, checked against ``licence_phrase`` in the file.
    """

    speaker: str  # corpus speaker id: 'id' + letters/digits, no '-' (CN-Celeb naming)
    person: str  # who reads, as credited by the package (or 'unnamed <lang> reader')
    package: str
    cell: str  # trials stay inside one cell
    language: str
    clip_glob: str
    fmt: str = "auto"  # auto | gsm
    stanza: str = "*"
    licence: str = ""
    licence_phrase: str = ""
    telephone: bool = False


@dataclass(frozen=True)
class Cell:
    name: str
    family: str  # wideband | telephone
    language_varies: bool
    description: str


CELLS: dict[str, Cell] = {}
VOICES: dict[str, Voice] = {}


def register_cell(cell: Cell) -> Cell:
    if cell.name in CELLS or "-" in cell.name:
        raise ValueError(f"bad or repeated cell name '{cell.name}'")
    CELLS[cell.name] = cell
    return cell


def register_voice(v: Voice) -> Voice:
    if v.speaker in VOICES or not re.fullmatch(r"id[a-z0-9]+", v.speaker):
        raise ValueError(f"bad or repeated speaker id '{v.speaker}'")
    if v.cell not in CELLS:
        raise ValueError(f"voice '{v.speaker}' names unknown cell '{v.cell}'")
    VOICES[v.speaker] = v
    return v


register_cell(
    Cell(
        "klettres",
        "wideband",
        True,
        "KLettres letters and syllables, one reader per language (language varies with the speaker)",
    )
)
register_cell(Cell("teles", "telephone", False, "Spanish telephone prompts, 8 kHz, GSM 6.10"))
register_cell(Cell("telfr", "telephone", False, "French telephone prompts, 8 kHz, GSM 6.10"))
register_cell(Cell("telit", "telephone", False, "Italian telephone prompts, 8 kHz, GSM 6.10"))

for _lang in KLETTRES_LANGS:
    register_voice(
        Voice(
            f"idkl{_lang.replace('_', '').lower()}",
            f"KLettres {_lang} reader",
            KLETTRES,
            "klettres",
            _lang,
            f"usr/share/klettres/{_lang}/*/*.ogg",
        )
    )
_SND = "usr/share/asterisk/sounds"
register_voice(
    Voice(
        "idtelallison",
        "Allison Smith",
        "asterisk-core-sounds-es-wav",
        "teles",
        "es",
        f"{_SND}/es_MX_f_Allison/**/*.wav",
        stanza="*",
        telephone=True,
    )
)
register_voice(
    Voice(
        "idteljuly",
        "July E. Jimenez (Avatar Ltda.)",
        "asterisk-prompt-es-co",
        "teles",
        "es",
        f"{_SND}/es/**/*.gsm",
        fmt="gsm",
        licence="GPL-2",
        licence_phrase="GNU General Public License",
        telephone=True,
    )
)
register_voice(
    Voice(
        "idteljune",
        "June Wallack",
        "asterisk-core-sounds-fr-wav",
        "telfr",
        "fr",
        f"{_SND}/fr_CA_f_June/**/*.wav",
        stanza="fr-*",
        telephone=True,
    )
)
register_voice(
    Voice(
        "idtelarmelle",
        "Armelle Desjardins",
        "asterisk-prompt-fr-armelle",
        "telfr",
        "fr",
        f"{_SND}/fr/**/*.gsm",
        fmt="gsm",
        licence="BSD-style (Michel Gutierrez 2006)",
        licence_phrase="Redistribution and use",
        telephone=True,
    )
)
register_voice(
    Voice(
        "idtelcarlo",
        "Carlo Flora",
        "asterisk-core-sounds-it-wav",
        "telit",
        "it",
        f"{_SND}/it_IT_m_Carlo/**/*.wav",
        stanza="it-*",
        telephone=True,
    )
)
register_voice(
    Voice(
        "idtelmenardi",
        "Menardi prompts voice (copyright: Marco Menardi, Paola Dal Zot)",
        "asterisk-prompt-it-menardi-wav",
        "telit",
        "it",
        f"{_SND}/it_IT_f_Menardi/**/*.wav",
        stanza="*",
        telephone=True,
    )
)


def packages(voices: list[Voice] | None = None) -> list[str]:
    """The Debian packages that hold ``voices`` (all registered voices by default), in order."""
    return list(dict.fromkeys(v.package for v in (voices or list(VOICES.values()))))


def voice_clips(v: Voice, root: Path) -> list[Path]:
    """Speech clips of ``v`` under its unpacked package ``root`` (sorted; tones and silences left out)."""
    return sorted(p for p in root.glob(v.clip_glob) if p.is_file() and not SKIP_NAMES.search(
        p.relative_to(root).as_posix().split("sounds/", 1)[-1]))  # fmt: skip


# ---------------------------------------------------------------------------------- licences


@dataclass
class Licence:
    package: str
    licence: str
    copyright: str  # the holder line(s) of the matching paragraph
    file: str  # copyright file, relative to the unpacked package
    voices: list[str] = field(default_factory=list)


def copyright_file(root: Path, package: str) -> Path | None:
    p = root / "usr" / "share" / "doc" / package / "copyright"
    return p if p.is_file() else None


def dep5_paragraphs(text: str) -> list[dict[str, str]]:
    """Paragraphs of a machine-readable (DEP-5) copyright file as {field: value} (continuations joined)."""
    paras: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, ""
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, val = line.partition(":")
            key = key.strip().lower()
            cur[key] = val.strip()
    if cur:
        paras.append(cur)
    return paras


def voice_licence(v: Voice, root: Path) -> Licence:
    """The licence covering ``v``, read from its package's copyright file.

    DEP-5 files: the last ``Files:`` paragraph with a pattern matching ``v.stanza`` wins (the
    DEP-5 rule). Free-form files: ``v.licence``, accepted only if ``v.licence_phrase`` is in them.

    Raises:
        ValueError: no copyright file, or nothing in it that names the voice's licence.
    """
    path = copyright_file(root, v.package)
    if path is None:
        raise ValueError(f"{v.package}: no copyright file under usr/share/doc/{v.package}/")
    text = path.read_text(errors="replace")
    rel = path.relative_to(root).as_posix()
    if text.lstrip().lower().startswith("format:"):
        found = None
        for para in dep5_paragraphs(text):
            pats = para.get("files", "").split()
            if "license" in para and any(fnmatch.fnmatch(v.stanza, pat) or v.stanza == pat for pat in pats):
                found = para
        if found is None:
            raise ValueError(f"{path}: no 'Files:' paragraph covers '{v.stanza}'")
        return Licence(v.package, found["license"].splitlines()[0].strip(),
                       " ".join(found.get("copyright", "").split()), rel)  # fmt: skip
    if not v.licence or v.licence_phrase not in text:
        raise ValueError(f"{path}: free-form copyright file without the expected '{v.licence_phrase}'")
    holder = next((ln.strip() for ln in text.splitlines() if re.search(r"copyright|author", ln, re.I) and
                   len(ln.strip()) > 12), "")  # fmt: skip
    return Licence(v.package, v.licence, holder, rel)
