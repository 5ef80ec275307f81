"""Knowledge of the machine: the CPUs and memory a build may really use, disk space, job counts."""
