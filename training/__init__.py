"""Training: the checkpoint format (checkpoint.py, which everything that loads a model uses), the loop, several processes."""
