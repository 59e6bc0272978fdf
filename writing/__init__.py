"""Writing poems with a model: constraints, sampling, requests, keywords, revise."""
