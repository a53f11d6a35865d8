"""Everything that writes files or draws: run directories, JSON metrics, figures, the HTML report."""
