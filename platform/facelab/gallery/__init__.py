"""A 1:N identification gallery in SQLite: enrolled subjects, their face codes, top-k search.

- `store`: the SQLite file (schema, migrations, WAL connections) and `Gallery` over codes;
- `service`: `GalleryService`, the same over images (detect -> encode -> store / search), for Serve;
- `evaluate`: rank-1 identification of labelled faces through a real gallery file.
"""
