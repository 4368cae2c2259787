"""The offline meta-dataset: many small image-classification datasets built from Debian packages.

One module per source (`glyphs`, `emoji`, `folders`, `mnist_like`), each turning
installed package files into `DatasetSpec`s and rendering their images; `store`
owns the on-disk format, `partition` the seen/unseen split, `registry` the
committed summary. The stage that runs them is `d2nwg.datasets`.
"""
