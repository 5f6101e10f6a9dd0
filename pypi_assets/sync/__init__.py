"""The application layer: the use cases that combine pypi/, filters/ and store/.

- :mod:`.settings`: where a run reads and writes (paths, upstream, environment);
- :mod:`.run`: :func:`~.run.run_sync` and the window run, with the "up to date" rule;
- :mod:`.listing`, :mod:`.selection`, :mod:`.metadata`: the steps (list, select, refresh);
- :mod:`.reports`: the one progress type and the reports;
- :mod:`.pool`: the bounded worker pool and write batcher shared by metadata and files;
- :mod:`.windows`: serial-window partition keys;
- :mod:`.files`: file mirroring, blob verify and repair;
- :mod:`.verify`: the verify → repair → forget sequence behind `pypi-assets verify`;
- :mod:`.index`: the index writer (simple pages and JSON API as static files);
- :mod:`.library`: the façade for other mirroring tools (no disk, no DuckDB).

Importing this package loads nothing else: each module pulls in only what it uses, so a
library caller of :mod:`.library` loads neither DuckDB nor Dagster.
"""
