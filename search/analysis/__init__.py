"""Design-space analysis of a study (RegNet style), as plain data (no plotly): `data` reads the study, then
`importance`, `edf`, `costs` and `choices` each answer one question, and `analysis` gathers them into an
`Analysis`; `figure` draws it and `html` writes it (HTML, JSON, text)."""
