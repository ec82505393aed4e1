"""Offline evaluation: the evaluator over a manifest (plain and open-set protocols), its row
cache, scene-prior evaluation and calibration, and the trained-head and fine-tune evaluations."""
