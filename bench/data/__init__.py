"""Corpora, trial lists, multi-view augmentation, speaker-balanced sampling and the training loader.

Modules:
    audio    -- ``read_audio`` / ``audio_info``: soundfile decoding, mono, resampling, errors naming files.
    trials   -- ``read_trials``: CN-Celeb, VoxCeleb and Kaldi trial lists.
    corpus   -- ``load_corpus`` -> ``Corpus``; re-exports the names of ``index`` and ``readers``.
    index    -- the utterance index: ``IndexBuilder``, ``Row``, ``BadFile``, ``list_lines``, ``find_audio``.
    readers  -- the ``CORPORA`` registry of readers (each with its ``detect``): ``base`` (registry,
                ``Parts``), ``cnceleb`` (cnceleb, cnceleb2, cnceleb12), ``synthetic``, ``voxceleb``, ``kaldi``.
    layout   -- ``resolve`` / ``detect``: the one ``--corpus DIR`` or ``KIND:DIR`` argument.
    augment  -- the ``AUGMENTATIONS`` registry of view types and ``MultiViewAugmenter``.
    sampler  -- ``SpeakerBalancedBatchSampler``.
    loader   -- ``make_train_loader``.
    ondevice -- ``data.augment_on="device"``: ``PendingViews`` batches and the ``views_on_device`` hook.
    check    -- ``check_corpus`` behind ``bench data check``.
    fixtures -- tiny corpora in the real layouts (tests, perf).
    perf     -- ``loader_throughput`` for the benchmark suite.

Heavy imports (torch, scipy) stay inside the modules that need them.
"""
