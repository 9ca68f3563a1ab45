"""What a study holds, typed: one `TrialRecord` per trial (`trial`), the study's own keys (`study_attrs`),
and the front and the best feasible trial read from them (`front`). The only readers and writers of
Optuna attributes."""
