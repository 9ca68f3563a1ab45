"""How far to trust the short proxy: retrain a sample of a study's trials for longer (`plan`, `run`), rank
correlations with bootstrap intervals (`report`), and the scatter (`plot`)."""
