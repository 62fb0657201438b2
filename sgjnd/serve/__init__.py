"""The HTTP service (``sgjnd serve``): FastAPI app, cross-request dynamic batcher, limits and metrics.

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart). Nothing here is imported by ``import sgjnd``.
"""
