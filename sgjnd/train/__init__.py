"""Training and evaluation of SG-JND models: typed configs, the training loop, metrics, offline photos.

``sgjnd.train.loop`` needs torch; ``config``, ``evaluate`` (metrics) and ``photos`` do not.
"""
