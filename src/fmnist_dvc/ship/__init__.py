"""The model in users' hands, run by no stage: `fmnist predict` and the `fmnist` command."""
