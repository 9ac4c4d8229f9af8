"""Slurm driver (sbatch/squeue/sinfo/scancel/scontrol)."""
