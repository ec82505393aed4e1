"""Training the embedding head: cached-feature datasets, losses (center, ArcFace, CosFace), the training loop
with a region curriculum, the landmark-presence gate and cross-fitted (out-of-fold) calibration.

torch is imported by the modules that train (trainer, losses, gate training); the orchestration modules import
them lazily where they can, and scoring a trained gate is numpy.
"""
