"""Seconds-long settings of the default model's training commands, shared by the tests that run them."""

# training.default_train (TrainConfig fields): 2 steps over a pool of 2 small clips, validation on 3
TINY_DEFAULT_TRAIN_YAML = ("steps: 2\nbatch_size: 2\npool_clips: 2\nrefresh_every: 1\nrefresh_clips: 1\n"
                           "clip_frames: 9\nrender_width: 128\nrender_height: 72\nstrides: [1, 2]\nlog_every: 1\n"
                           "checkpoint_every: 1\nthreads: 1\nval_clips: 3\n")
