"""Training from the command line: one task, its torchrun workers and its Dask cluster."""
