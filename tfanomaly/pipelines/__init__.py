"""Data in and out, and the stages of the search: simulate, ingest, dataset, stretch, train, score, ..."""
