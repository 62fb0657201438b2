"""Proxy JND labels from oracle metrics (Butteraugli, SSIMULACRA2): labels made here are NOT human data.

Needs numpy and OpenCV; the oracles need ``butteraugli_main`` (Debian libjxl-devtools) or the ``ssimulacra2`` package.
"""
