"""Running a study: the loop (`study`), one trial (`objective`), its latency (`latency`), pruning, storage
and stale trials (`storage`), extra worker processes (`workers`, `worker_main`), confirmations (`confirm`)."""
