"""What the runs mean: one reporting API over seeds (one seed is K = 1), stats, tables, plots, the claims check
and its report, the factorial, and the notebooks' facade. Imports core, profiles and orchestrate."""
