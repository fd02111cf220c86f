"""Corpus readers, one module per layout family; importing this package registers them all in
:data:`CORPORA` (``bench.data.corpus.load_corpus`` picks one by ``data.corpus``).

=============  ==========================================================================
``cnceleb``    CN-Celeb1: ``data/<spk>/<genre>-<session>-<idx>.flac``, ``dev/dev.lst``,
               ``eval/{enroll,test}``, ``eval/lists/{enroll.lst,enroll.map,test.lst,trials.lst}``
``synthetic``  the CN-Celeb1 reader on ``bench data synth`` output (plus ``dev/val_trials.lst``)
``cnceleb2``   CN-Celeb2: ``data/<spk>/*.flac`` (training only)
``cnceleb12``  CN-Celeb1 dev + CN-Celeb2 for training, CN-Celeb1 eval: ``<root>/CN-Celeb_flac``
               and ``<root>/CN-Celeb2_flac``, or the two roots given in ``data.train_lists``
``voxceleb``   ``id*/<video>/<n>.wav`` (also under ``wav/``); trials ``veri_test2.txt`` etc.
``kaldi``      a Kaldi data dir: ``wav.scp``, ``utt2spk``, ``trials``
=============  ==========================================================================

A new reader: a module here with ``@register_corpus(name, summary, detect)`` on its reader, and
its name in the import line below.
"""

from bench.data.readers import cnceleb, kaldi, synthetic, voxceleb  # noqa: F401  (they register)
from bench.data.readers.base import CORPORA, CorpusEntry, Detector, Parts, Reader, register_corpus

__all__ = ["CORPORA", "CorpusEntry", "Detector", "Parts", "Reader", "register_corpus"]
