"""What every stage shares: writing files safely."""
