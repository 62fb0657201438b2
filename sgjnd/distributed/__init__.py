"""Distributed scoring (``sgjnd predict --ray``): Ray Data over the same predictor. Needs the ``ray`` extra."""
