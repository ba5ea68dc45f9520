"""Slide and batch tasks: run, predict, QC, explain, export and the execution that runs them."""
