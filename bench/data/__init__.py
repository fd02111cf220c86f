"""Corpora, trial lists, multi-view augmentation, speaker-balanced sampling and the training loader.

Modules:
    audio    -- ``read_audio`` / ``audio_info``: soundfile decoding, mono, resampling, errors naming files.
    trials   -- ``read_trials``: CN-Celeb, VoxCeleb and Kaldi trial lists.
    corpus   -- ``load_corpus`` and the ``CORPORA`` registry of readers (each with its ``detect``).
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
