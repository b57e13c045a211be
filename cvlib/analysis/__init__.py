"""The analysis layer: one module per stage of a study and its helpers (they import foundations and
models, never the run layer)."""
