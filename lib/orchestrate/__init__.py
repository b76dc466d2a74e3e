"""Many runs: sweeps (local processes, Slurm through submitit), the one evidence lookup, the papermill pipeline,
preflight checks, `--tiny` and Colab. Imports core and profiles."""
