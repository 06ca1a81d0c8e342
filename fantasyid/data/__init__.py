"""Data: video IO (shared by prep, train and eval), the training manifest schema, prep stages and the dataset.

* :mod:`fantasyid.data.video`: listing, probing and decoding videos (PyAV)
* :mod:`fantasyid.data.manifest`: the versioned Parquet manifest that ``fantasyid prep`` writes and training reads
"""
