"""ultralytics inside facelab: offline by construction, every fit inside a Ray Tune trial.

- `offline`: makes ultralytics offline before it is imported (every module here that uses
  ultralytics imports it first);
- `layout`: a task's splits as `YoloData` and ultralytics' dataset layout in the cache;
- `train`: the trainer arguments, the recording validator, each epoch's metrics;
- `trial`: the Ray Tune function trainable, its resources and run config, `fit` (one trial);
- `export`: a trial's best checkpoint as a model folder;
- `predict`: a model folder run on RGB images (`load`, `detect`, `classify`).

Importing the package itself imports nothing from ultralytics.
"""
