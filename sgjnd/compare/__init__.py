"""Compare backends and precisions (``sgjnd compare``), in the spirit of Polygraphy's comparator. Two levels:

- :mod:`sgjnd.compare.tensors`: each output of a graph against the reference's, per-precision tolerances.
- :mod:`sgjnd.compare.task`: run targets on the same images and compare their JND QFs; the report.
"""
