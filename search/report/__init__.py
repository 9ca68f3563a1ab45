"""What a study shows a person: the figure's data (`figure_data`, no plotly) drawn by `figure`, the CSV
(`trials_csv`), files (`export`, `images`), and the search's progress and summary as text (`summary`)."""
