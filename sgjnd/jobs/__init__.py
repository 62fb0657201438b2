"""Batch jobs that survive kills: inputs, a resumable result log, and a runner on worker threads.

- :mod:`sgjnd.jobs.inputs`: which files the arguments name (files, folders, ``.txt`` lists), and reading one.
- :mod:`sgjnd.jobs.results_log`: the append-only JSONL result log, torn last lines cut off on resume.
- :mod:`sgjnd.jobs.runner`: items through worker threads, one outcome per item in input order.
"""
