"""The MCS2019 video face recognition aggregator (seed 003, 1st place): one descriptor per
track of frame descriptors.

The baseline averages a track's unit frame descriptors. The winner's aggregator: PCA of the
frames to 200 dimensions (fitted on train), a per-frame linear encoder to a code of about 1000
with a softmax, the codes averaged over the track's frames, a linear decoder back,
L2-normalised; trained against every training reference descriptor with a double-margin
contrastive loss on batches of tracks. Option `quality="norm"`: frames are weighted by their
descriptor norm to a learned power. Validation is a split of people: TPR at FPR 1e-5 of the
validation tracks against the validation people's references.

- `network`: the aggregator module and the padding of tracks into a batch;
- `training`: the contrastive loss and the `TorchRecipe` that trains the aggregator;
- `data`: the data prepared once per fit or sweep (people split, references, PCA, the
  automatic margin centre and quality power, the baseline's scores);
- `requests`: the Serve request models (`/tracks`, `/tracks/aggregate`, `/tracks/match`);
- `predictor`: a model folder as a batch predictor and the answers of aggregate and match.

The task itself (`facelab.tasks.tracks`) puts these together. torch is imported only when a
model is built or run.
"""
