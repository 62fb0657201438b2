"""Visual reports of JND predictions: self-contained HTML pages (no network) for `sgjnd predict --report`,
`sgjnd compare --report` and the service's page. numpy + OpenCV only; the renderer is plain JavaScript in
``assets/``."""
