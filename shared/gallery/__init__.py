"""The landmark gallery: importing landmarks and their photos (CSV, folder and GLDv2 layouts),
reference photos, cleaning against them, and mining candidates from user uploads."""
