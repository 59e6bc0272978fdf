"""Developer tools: the benchmark, the NumPy LSTM's gradient checks, the server's load test."""
