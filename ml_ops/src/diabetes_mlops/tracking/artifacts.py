"""Where a training run keeps what later steps read back: the model, the holdout rows validation
scores both models on, and the fingerprints of the rows the model was trained on."""

MODEL_ARTIFACT = "model"
HOLDOUT_ARTIFACT = "holdout/holdout.csv"
TRAIN_ROWS_ARTIFACT = "holdout/train_row_fingerprints.npy"
