"""The one way the toolkit decodes a text file it reads.

Every text input (trial lists, score files, enrolment maps, corpus lists, Kaldi ``wav.scp`` /
``utt2spk`` / ``spk2utt``, utterance lists of ``bench embed``, TOML configs) goes through
:func:`read_text` or :func:`read_lines`, so they all accept the same files:

* UTF-8, with or without a byte-order mark (``EF BB BF``, what Windows editors write as
  "UTF-8 with BOM"); the mark is dropped so it never sticks to the first id;
* CRLF or LF line ends (a lone CR inside a line is kept: it is not a line end in any of our formats);
* trailing blanks of a line and blank lines at the end are left to the callers' ``split()``.

Bytes that are not UTF-8 stop with ``file:line: not UTF-8 text`` (the line of the first bad byte)
instead of a ``UnicodeDecodeError`` traceback or an id with a replacement character in it.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from bench.errors import BenchError

BOM = codecs.BOM_UTF8  # b"\xef\xbb\xbf"


def decode(data: bytes, path: str | Path | None = None) -> str:
    """``data`` as text: BOM dropped, UTF-8 strictly, CRLF turned into LF.

    Raises:
        BenchError: ``path:line: not UTF-8 text`` naming the line of the first undecodable byte.
    """
    body = data[len(BOM) :] if data.startswith(BOM) else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body[: e.start].count(b"\n") + 1
        raise BenchError(f"not UTF-8 text (byte 0x{body[e.start]:02x})", path=path, line=line) from None
    return text.replace("\r\n", "\n") if "\r\n" in text else text


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    """The bytes of ``path``; a missing or unreadable file is a :class:`BenchError` naming ``what``."""
    p = Path(path)
    if not p.exists():
        raise BenchError(f"{what} not found", path=p)
    if p.is_dir():
        raise BenchError(f"{what} is a folder, expected a file", path=p)
    try:
        return p.read_bytes()
    except OSError as e:
        raise BenchError(f"cannot read {what}: {e.strerror or e}", path=p) from None


def read_text(path: str | Path, what: str = "file") -> str:
    """The decoded text of ``path`` (see the module docstring)."""
    return decode(read_bytes(path, what), path)


def read_lines(path: str | Path, what: str = "file") -> list[str]:
    """Lines of ``path`` without line ends and trailing blanks (line ``n`` is ``[n - 1]``)."""
    return [line.rstrip() for line in read_text(path, what).split("\n")]
