"""Data: video IO (shared by prep, train and eval), the training manifest schema, prep stages and the dataset.

* :mod:`fantasyid.data.video`: listing, probing and decoding videos (PyAV)
* :mod:`fantasyid.data.manifest`: the versioned Parquet manifest that ``fantasyid prep`` writes and training reads
* :mod:`fantasyid.data.sources`: input discovery, captions, shards by path hash
* :mod:`fantasyid.data.clips`: clip windows (fixed or shots) and decoding the sampled frames
* :mod:`fantasyid.data.settings`: :class:`~fantasyid.data.settings.PrepSettings`, every prep option
* :mod:`fantasyid.data.stages`: face, text (OCR), views, 3D (DECA + FLAME) and caption stages
* :mod:`fantasyid.data.caption`: transformers captioners from a local folder
* :mod:`fantasyid.data.runner`: :func:`~fantasyid.data.runner.run_prep`, shards, journal and resume, local engine
* :mod:`fantasyid.data.ray_engine`: the same stages on Ray Data
* :mod:`fantasyid.data.report`: ``prep merge``: manifest, report tables (pandas) and plots
"""
